"""The registries of models, datasets and training modes (trainers/registry.py and one
registry.py per package): register, get, names, the specs' own checks, and that what the plan
reads imports no torch."""

import pathlib
import subprocess
import sys

import pytest

from trainers.data import registry as data_registry
from trainers.data.spec import DatasetError, DatasetSpec
from trainers.models import registry as model_registry
from trainers.models.spec import ModelError, ModelSpec
from trainers.modes import registry as mode_registry
from trainers.modes.spec import ModeError, ModeSpec

KINDS = [
    (model_registry, ModelError, "model", ModelSpec("toy", "toy:build", "toy:count", width=4)),
    (data_registry, DatasetError, "dataset", DatasetSpec("toy", "toy:load", 10, (3, 32, 32), 100, 20)),
    (mode_registry, ModeError, "mode", ModeSpec("toy", "toy:Settings", "toy:Callbacks")),
]


@pytest.fixture(autouse=True)
def restored_registries(monkeypatch):
    for registry in (model_registry._MODELS, data_registry._DATASETS, mode_registry._MODES):
        monkeypatch.setattr(registry, "_specs", dict(registry._specs))


@pytest.mark.parametrize("registry, error, field, spec", KINDS, ids=[k[2] for k in KINDS])
def test_register_get_and_names(registry, error, field, spec):
    before = registry.names()
    assert registry.register(spec) is spec
    assert registry.names() == (*before, "toy") and registry.get("toy") is spec
    registry.register(type(spec)(**{f: getattr(spec, f) for f in spec.__dataclass_fields__}))  # equal: a no-op
    assert registry.names() == (*before, "toy") and registry.get("toy") is spec
    other = type(spec)(**{**{f: getattr(spec, f) for f in spec.__dataclass_fields__}, "name": before[0]})
    with pytest.raises(error, match=f"^{field}: '{before[0]}' is registered already with another spec; "
                                    f"allowed: a new name, or the same spec again$"):
        registry.register(other)


@pytest.mark.parametrize("registry, error, field, spec", KINDS, ids=[k[2] for k in KINDS])
def test_bad_registrations_and_lookups_are_one_line_naming_the_field(registry, error, field, spec):
    with pytest.raises(error, match=f"^{field}: got 'nope', allowed: {registry.names()[0]}, "):
        registry.get("nope")
    with pytest.raises(error, match=rf"^{field}: got \['x'\], allowed: "):
        registry.get(["x"])
    with pytest.raises(error, match=f"^{field}: register got dict, allowed: a {type(spec).__name__}$"):
        registry.register({"name": "toy"})
    with pytest.raises(error, match=f"^{field}: got the name 'my toy', allowed: a Python identifier"):
        registry.register(type(spec)(**{**{f: getattr(spec, f) for f in spec.__dataclass_fields__}, "name": "my toy"}))


def test_the_specs_check_their_fields():
    with pytest.raises(ModelError, match="^model toy: builder got 'toy.build', allowed: a 'package.module:attr'"):
        ModelSpec("toy", "toy.build", "toy:count")
    with pytest.raises(ModelError, match="^model toy: width got 0, allowed: its default"):
        ModelSpec("toy", "toy:build", "toy:count", width=0)
    with pytest.raises(ModelError, match="^model toy: input_shapes got"):
        ModelSpec("toy", "toy:build", "toy:count", input_shapes=((3, 0, 32),))
    assert ModelSpec("toy", "toy:build", "toy:count", width=4, depth=2, dropout=True).hyperparameters == \
        ("width", "depth", "dropout")
    with pytest.raises(DatasetError, match="^dataset toy: classes got 0, allowed: a positive integer$"):
        DatasetSpec("toy", "toy:load", 0, (3, 32, 32), 100, 20)
    with pytest.raises(DatasetError, match=r"^dataset toy: input_shape got \(32, 32\), allowed: \(C, H, W\)"):
        DatasetSpec("toy", "toy:load", 10, (32, 32), 100, 20)
    with pytest.raises(ModeError, match="^mode toy: callbacks got 'Callbacks', allowed: a 'package.module:attr'"):
        ModeSpec("toy", "toy:Settings", "Callbacks")
    with pytest.raises(ModeError, match="^mode toy: packable got 1, allowed: true or false$"):
        ModeSpec("toy", "toy:Settings", "toy:Callbacks", packable=1)
    not_a_dataclass = ModeSpec("toy", "trainers.values:is_int", "toy:Callbacks")
    with pytest.raises(ModeError, match="^mode toy: settings trainers.values:is_int is <function"):
        not_a_dataclass.parse({})


def test_the_built_in_specs():
    assert model_registry.names() == ("lenet_300_100", "mcnn", "nin", "resnet18", "resnet18k", "resnet20", "resnet32",
                                      "resnet56", "vgg11", "vgg16")
    assert data_registry.get("mnist").input_shape == (1, 28, 28) and data_registry.get("digits").test_size == 360
    assert [n for n in mode_registry.names() if mode_registry.get(n).packable] == \
        ["standard", "ema", "imp", "extended_dense"]
    assert [n for n in mode_registry.names() if mode_registry.get(n).stoppable] == ["standard", "ema"]


def test_what_the_plan_reads_imports_no_torch():
    code = ("import sys\n"
            "from trainers import catalog, config, data, models, modes\n"
            "from trainers.data import registry as d\n"
            "from trainers.models import registry as m\n"
            "from trainers.modes import registry as o\n"
            "assert catalog.parameter_count('lenet_300_100', 10, input_shape=(1, 28, 28)) == 266610\n"
            "assert catalog.dataset_info('cifar100').classes == 100 and d.names() and m.names() and o.names()\n"
            "assert config.TrainConfig(mode='imp', mode_settings={'levels': 2, 'rewind_epoch': 1}).trial_id\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    root = pathlib.Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr

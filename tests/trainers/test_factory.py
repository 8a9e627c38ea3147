"""Factory models (trainers/models/factory.py): a ``package.module:function`` model name whose
spec is read from the function's signature, counted on the built model, refused in one line
when it does not fit; a sweep file may name one."""

from __future__ import annotations

import textwrap

import pytest

from sweep import config as sweep_config
from trainers import catalog, models
from trainers.config import TrainConfig
from trainers.models import factory

MODULE = '''
from torch import nn

def small_cnn(num_classes, width=8, depth=1, input_shape=(3, 32, 32)):
    layers, channels = [], input_shape[0]
    for _ in range(depth):
        layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
        channels = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))

def no_default(num_classes, width):
    raise AssertionError("never built")

def zero_width(num_classes, width=0):
    raise AssertionError("never built")

def keyword_classes(*, num_classes, width=4):
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, width), nn.ReLU(), nn.Linear(width, num_classes))

def no_classes(*, width=8):
    raise AssertionError("never built")

def with_dropout(num_classes, dropout=0.0):
    return nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(3 * 32 * 32, num_classes))

NOT_A_FUNCTION = 3
'''


@pytest.fixture
def module(tmp_path, monkeypatch, request):
    """A factory module of its own name per test (the model registry lives as long as the process)."""
    import hashlib

    name = f"factory_zoo_{hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:12]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_a_factory_spec_is_read_from_its_signature_and_counted_on_the_built_model(module):
    reference = f"{module}:small_cnn"
    spec = models.get(reference)
    assert (spec.width, spec.depth, spec.dropout, spec.input_shapes) == (8, 1, False, None)
    assert spec.hyperparameters == ("width", "depth") and spec.parameter_count is None
    assert models.get(reference) is spec  # registered once, found again
    # Counted on the built model: conv 3->w (3*3*3*w + w), conv w->w per further block, linear w->10.
    for width, depth, channels in ((4, 1, 3), (6, 2, 1)):
        expected = (9 * channels * width + width) + (depth - 1) * (9 * width * width + width) + (width * 10 + 10)
        assert catalog.parameter_count(reference, 10, width=width, depth=depth,
                                       input_shape=(channels, 32, 32)) == expected
    built = models.build(reference, 10, width=4, input_shape=(1, 16, 16))
    assert built[0].in_channels == 1 and built[-1].out_features == 10


def test_a_registered_builder_as_a_factory_equals_the_registered_model():
    """nin's own builder named as a factory: the same hyperparameters and defaults, and the
    torch-free count of the registry equals the factory's count of the built model."""
    spec, registered = models.get("trainers.models.nin:build_nin"), models.get("nin")
    assert spec.hyperparameters == registered.hyperparameters
    assert (spec.width, spec.depth) == (registered.width, registered.depth)
    for width, depth in ((8, 2), (16, 3)):
        assert catalog.parameter_count("trainers.models.nin:build_nin", 10, width=width, depth=depth) == \
            catalog.parameter_count("nin", 10, width=width, depth=depth)


@pytest.mark.parametrize("function, message", [
    ("no_default", "parameter 'width' has no default"),
    ("zero_width", "width defaults to 0; allowed: an integer >= 1"),
    ("no_classes", "it does not take the number of classes"),
    ("NOT_A_FUNCTION", "has no function 'NOT_A_FUNCTION'"),
    ("missing", "has no function 'missing'"),
])
def test_a_factory_that_does_not_fit_is_one_line(module, function, message):
    with pytest.raises(models.ModelError, match=message) as caught:
        models.get(f"{module}:{function}")
    assert "\n" not in str(caught.value) and str(caught.value).startswith(f"model: {module}:{function}")


def test_a_factory_may_take_the_classes_by_keyword_as_torchvisions_builders_do(module):
    spec = models.get(f"{module}:keyword_classes")
    assert spec.hyperparameters == ("width",) and spec.width == 4
    assert models.build(f"{module}:keyword_classes", 7, width=5)[-1].out_features == 7
    # torchvision.models:resnet18(*, weights=None, progress=True, **kwargs): num_classes by keyword;
    # counted on the built model, equal to torchvision's own model's count.
    import torchvision

    reference = "torchvision.models:resnet18"
    assert models.get(reference).hyperparameters == ()
    assert models.build(reference, 10, input_shape=(3, 32, 32)).fc.out_features == 10
    assert catalog.parameter_count(reference, 10) == \
        sum(p.numel() for p in torchvision.models.resnet18(num_classes=10).parameters())


def test_a_factory_whose_module_does_not_import_is_one_line():
    with pytest.raises(models.ModelError, match="the module does not import .ModuleNotFoundError") as caught:
        models.get("no_such_zoo_module:build")
    assert "\n" not in str(caught.value)


def test_a_factory_with_dropout_takes_the_rate_and_refuses_other_hyperparameters(module):
    reference = f"{module}:with_dropout"
    assert models.get(reference).hyperparameters == ("dropout",)
    assert models.build(reference, 10, dropout=0.3)[1].p == 0.3
    with pytest.raises(models.ModelError, match="'width' is not supported"):
        models.build(reference, 10, width=4)


def test_a_factory_trial_id_is_a_file_name_and_hashes_the_whole_reference(module):
    one = TrainConfig(model=f"{module}:small_cnn", dataset="digits", width=4)
    other = TrainConfig(model=f"{module}:with_dropout", dataset="digits")
    assert one.trial_id.startswith("small_cnn-") and ":" not in one.trial_id and "." not in one.trial_id
    assert TrainConfig(model="nin").trial_id.startswith("nin-")  # registered names: unchanged
    renamed = TrainConfig(model=f"{module}_copy:small_cnn", dataset="digits", width=4)
    assert renamed.trial_id != one.trial_id and other.trial_id.startswith("with_dropout-")


def test_a_sweep_file_may_name_a_factory_model_and_a_bad_one_is_one_line(module):
    document = {"experiment": "factory", "dataset": "digits", "model": f"{module}:small_cnn",
                "grid": {"width": [4, 8]}, "seeds": [0], "train": {"epochs": 1}}
    config = sweep_config.parse(document)
    assert [t.width for t in config.trials()] == [4, 8]
    with pytest.raises(sweep_config.SweepConfigError, match="parameter 'width' has no default"):
        sweep_config.parse({**document, "model": f"{module}:no_default", "grid": {}})
    with pytest.raises(sweep_config.SweepConfigError, match="grid.dropout: got 0.5, but model .* has no dropout"):
        sweep_config.parse({**document, "grid": {"dropout": [0.0, 0.5]}})
    with pytest.raises(sweep_config.SweepConfigError, match="unknown model 'nine'.*or a factory"):
        sweep_config.parse({**document, "model": "nine"})


def test_the_count_of_a_factory_is_cached_per_architecture(module):
    reference = f"{module}:small_cnn"
    factory.built_parameter_count.cache_clear()
    for _ in range(3):
        catalog.parameter_count(reference, 10, width=4, input_shape=(3, 32, 32))
    assert factory.built_parameter_count.cache_info().misses == 1

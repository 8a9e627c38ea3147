"""A model, a dataset and a training mode added from outside genzoo: each a toy extension in
ONE module file (the implementation and one ``register`` call, like a module listed under
``extensions:`` in a sweep file), shown validated, planned and trained by the loop for one
epoch on a few dozen digits, without any other file changed."""

import importlib
import math
import sys
import textwrap

import pytest
import torch

from trainers import catalog, data, models
from trainers.config import ConfigError, PackError, TrainConfig, check_packable
from trainers.data import registry as data_registry
from trainers.models import registry as model_registry
from trainers.modes import registry as mode_registry
from trainers.train import train

TINY = dict(dataset="digits", train_size=40, epochs=1, batch_size=20, augment=False, lr=0.05)


@pytest.fixture
def extension(tmp_path, monkeypatch):
    """``extension(name, source)``: write the module ``name`` into a folder on ``sys.path`` and
    import it. The registries and ``sys.modules`` are as before after the test."""
    for registry in (model_registry._MODELS, data_registry._DATASETS, mode_registry._MODES):
        monkeypatch.setattr(registry, "_specs", dict(registry._specs))
    monkeypatch.syspath_prepend(str(tmp_path))
    imported = []

    def load(name, source):
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        imported.append(name)
        return importlib.import_module(name)

    yield load
    for name in imported:
        sys.modules.pop(name, None)


TOY_MODEL = '''
    """A two-layer perceptron of any input shape."""
    import math

    import torch
    from torch import nn

    from trainers.models.registry import register
    from trainers.models.spec import ModelSpec


    class TwoLayer(nn.Module):
        def __init__(self, num_classes, input_shape, width):
            super().__init__()
            self.hidden = nn.Linear(math.prod(input_shape), width)
            self.out = nn.Linear(width, num_classes)

        def forward(self, x):
            return self.out(torch.relu(self.hidden(x.flatten(1))))

        def margin_layers(self):  # what the margin measures read, as every model of genzoo has
            return [("block1", self.hidden)]


    def build(num_classes, *, width=8, input_shape=(3, 32, 32)):
        return TwoLayer(num_classes, input_shape, width)


    def count(classes, *, width, depth, input_shape):
        return math.prod(input_shape) * width + width + width * classes + classes


    register(ModelSpec("toy_mlp", "toy_model:build", "toy_model:count", width=8, input_shapes=None))
'''


def test_a_model_in_one_file_is_validated_planned_and_trained(extension, tmp_path):
    module = extension("toy_model", TOY_MODEL)
    assert "toy_mlp" in models.names() and models.supported_hyperparameters("toy_mlp") == ["width"]

    with pytest.raises(models.ModelError, match=r"^model toy_mlp: hyperparameter 'depth' is not supported \(allowed: width\)$"):
        models.build("toy_mlp", 10, depth=2)
    with pytest.raises(models.ModelError, match="^model toy_mlp: hyperparameter 'width' must be a positive integer"):
        models.build("toy_mlp", 10, width=0)

    for width, shape in ((None, (3, 32, 32)), (5, (1, 28, 28))):
        built = models.build("toy_mlp", 10, width=width, input_shape=shape)
        assert catalog.parameter_count("toy_mlp", 10, width=width, input_shape=shape) == \
            sum(p.numel() for p in built.parameters())

    result = train(TrainConfig(**TINY, model="toy_mlp", width=6), run_dir=tmp_path / "run", device="cpu")
    assert [m["model_id"] for m in result.models] == ["final"] and len(result.records) == 1
    assert math.isfinite(result.records[0]["test_loss"])
    assert result.model.hidden.out_features == 6

    importlib.reload(module)  # an equal spec again: harmless
    with pytest.raises(models.ModelError, match="^model: 'toy_mlp' is registered already with another spec"):
        model_registry.register(model_registry.ModelSpec("toy_mlp", "toy_model:build", "toy_model:count", width=9))


TOY_DATASET = '''
    """The first 40 training and 20 test digits, one gray channel: a dataset of 1x32x32 images."""
    from trainers.data.registry import register
    from trainers.data.spec import DatasetSpec


    def load(root):
        from trainers.data import RawDataset, sources  # torch only when loaded, not when planned

        digits = sources.load_digits(root)
        return RawDataset(digits.train_images[:40, :1], digits.train_labels[:40], digits.test_images[:20, :1],
                          digits.test_labels[:20], 10, digits.mean[:1], digits.std[:1])


    register(DatasetSpec("gray_digits", "toy_dataset:load", classes=10, input_shape=(1, 32, 32),
                         train_size=40, test_size=20))
'''


def test_a_dataset_in_one_file_is_validated_planned_and_trained(extension, tmp_path):
    extension("toy_dataset", TOY_DATASET)
    assert "gray_digits" in data.names()
    assert catalog.dataset_info("gray_digits") == (40, 20, 10, (1, 32, 32))

    with pytest.raises(data.DatasetError, match=r"^train_size: got 41, allowed: an integer in \[1, 40\]"):
        data.load("gray_digits", train_size=41)
    with pytest.raises(models.ModelError, match="^model nin: takes 3×32×32 inputs, the dataset's are 1×32×32"):
        models.build("nin", 10, input_shape=catalog.dataset_info("gray_digits").shape)
    with pytest.raises(data.DatasetError, match="^dataset: gray_digits has nothing to download, allowed: digits"):
        data.download("gray_digits")

    loaded = data.load("gray_digits", train_size=30, label_noise=0.1, seed=3)
    assert loaded.input_shape == (1, 32, 32) and len(loaded.train_labels) == 30 and int(loaded.noisy.sum()) == 3

    config = TrainConfig(**{**TINY, "dataset": "gray_digits"}, model="lenet_300_100", width=12)
    result = train(config, run_dir=tmp_path / "run", device="cpu")
    assert [m["model_id"] for m in result.models] == ["final"]
    assert result.model.fc1.in_features == 32 * 32


def test_a_loader_that_disagrees_with_its_spec_is_one_line(extension):
    extension("toy_dataset", TOY_DATASET)
    data_registry.register(data_registry.DatasetSpec("gray_digits_100", "toy_dataset:load", classes=100,
                                                     input_shape=(1, 32, 32), train_size=40, test_size=20))
    with pytest.raises(data.DatasetError, match="^dataset gray_digits_100: its loader gives classes 10, its spec says 100"):
        data.load("gray_digits_100")


TOY_MODE = '''
    """Plain training that also yields the weights after every `every` epochs as a model."""
    from dataclasses import dataclass

    from trainers.modes.callbacks import ModeCallbacks, cpu_weights
    from trainers.modes.registry import register
    from trainers.modes.spec import ModeError, ModeSpec
    from trainers.values import is_int


    @dataclass(frozen=True)
    class SnapshotSettings:
        every: int = 1

        def validate(self, prefix):
            if not is_int(self.every) or self.every < 1:
                raise ModeError(f"{prefix}every: got {self.every!r}, allowed: an integer >= 1")


    class Snapshots(ModeCallbacks):
        def produces_model_after(self, epochs_done):
            return epochs_done % self.settings.every == 0 or super().produces_model_after(epochs_done)

        def models(self, state):
            out = super().models(state)
            if state.epoch % self.settings.every == 0:
                out[f"epoch_{state.epoch:02d}"] = cpu_weights(state.model)
            return out


    register(ModeSpec("snapshots", "toy_mode:SnapshotSettings", "toy_mode:Snapshots"))
'''


def test_a_mode_in_one_file_is_validated_planned_and_trained(extension, tmp_path):
    extension("toy_mode", TOY_MODE)
    assert "snapshots" in mode_registry.names()

    with pytest.raises(ConfigError, match=r"^mode_settings\.every: got 0, allowed: an integer >= 1$"):
        TrainConfig(**TINY, model="mcnn", width=4, mode="snapshots", mode_settings={"every": 0})
    with pytest.raises(ConfigError, match=r"^mode_settings\.often: unknown setting of mode snapshots, allowed: every$"):
        TrainConfig(**TINY, model="mcnn", width=4, mode="snapshots", mode_settings={"often": 2})
    with pytest.raises(ConfigError, match="^stop_at_train_loss: mode snapshots trains a schedule fixed in epochs"):
        TrainConfig(**TINY, model="mcnn", width=4, mode="snapshots", stop_at_train_loss=0.1)
    with pytest.raises(ConfigError, match="^mode: got 'snapshot', allowed: standard, ema, imp, extended_dense, "
                                          "prune_during_training, snapshots$"):
        TrainConfig(mode="snapshot")

    config = TrainConfig(**TINY, model="mcnn", width=4, mode="snapshots")
    with pytest.raises(PackError, match="^mode: 'snapshots' cannot be packed, packable modes: standard, ema"):
        check_packable([config])
    assert config.trial_id != TrainConfig(**TINY, model="mcnn", width=4, mode="snapshots",
                                          mode_settings={"every": 2}).trial_id
    assert TrainConfig.from_dict(config.to_dict()) == config

    result = train(config, run_dir=tmp_path / "run", device="cpu")
    assert sorted(m["model_id"] for m in result.models) == ["epoch_01", "final"]
    kept = torch.load(tmp_path / "run" / "epoch_01.pt", weights_only=True)
    assert all(torch.equal(kept[k], v) for k, v in result.model.state_dict().items())

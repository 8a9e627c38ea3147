"""Iterative magnitude pruning with learning-rate rewinding (``imp``) and its control
``extended_dense``, each checked against an independent computation."""

import pytest
import torch

from trainers.config import TrainConfig
from trainers.pruning import prunable_parameters
from resume_helpers import stop_and_resume, without_timing
from trainers.train import train

BASE = dict(dataset="digits", model="nin", width=8, depth=2, train_size=96, batch_size=32, epochs=3,
            lr=0.1, lr_schedule="step", lr_milestones=(1, 2), lr_decay_factor=0.5, augment=False)
SETTINGS = {"levels": 3, "rewind_epoch": 1}


class Recorder:
    """Weights at the end of every epoch, and per step the learning rate and the weights."""

    def __init__(self):
        self.epoch_end, self.steps = {}, []

    def on_step_end(self, state):
        weights = {n: p.detach().clone() for n, p in prunable_parameters(state.model)}
        self.steps.append((state.epoch, state.optimizer.param_groups[0]["lr"], weights))

    def on_epoch_end(self, state, record):
        self.epoch_end[state.epoch] = {n: p.detach().clone() for n, p in prunable_parameters(state.model)}


def brute_force_keep(weights, alive, keep):
    """The kept set: the ``keep`` largest |w| among the alive weights, earlier positions first on ties."""
    names = list(weights)
    flat = [(abs(float(v)), i) for i, v in enumerate(torch.cat([weights[n].flatten() for n in names]).tolist())]
    alive_flat = torch.cat([alive[n].flatten() for n in names]).tolist() if alive else [True] * len(flat)
    ranked = sorted((item for item, ok in zip(flat, alive_flat) if ok), key=lambda t: (-t[0], t[1]))
    kept = {i for _, i in ranked[:keep]}
    out, start = {}, 0
    for n in names:
        size = weights[n].numel()
        out[n] = torch.tensor([start + j in kept for j in range(size)]).view(weights[n].shape)
        start += size
    return out


@pytest.fixture(scope="module")
def imp_run():
    torch.set_num_threads(1)
    config = TrainConfig(**BASE, mode="imp", mode_settings=SETTINGS)
    recorder = Recorder()
    return config, train(config, device="cpu", hooks=[recorder]), recorder


def test_each_level_keeps_the_top_magnitude_remaining_weights_and_they_stay_zero(imp_run):
    config, result, recorder = imp_run
    epochs, retrain = config.epochs, config.epochs - SETTINGS["rewind_epoch"]
    total = sum(p.numel() for p in recorder.epoch_end[1].values())
    alive = None
    for level in range(1, SETTINGS["levels"] + 1):
        start = epochs + (level - 1) * retrain  # epochs done before the level begins
        keep = round(0.8 ** level * total)
        expected = brute_force_keep(recorder.epoch_end[start], alive, keep)
        steps = [w for epoch, _, w in recorder.steps if start <= epoch < start + retrain]
        for weights in steps:
            for name, mask in expected.items():
                assert torch.count_nonzero(weights[name][~mask]) == 0, (level, name)
        end = recorder.epoch_end[start + retrain]
        assert sum(int(expected[n].sum()) for n in expected) == keep
        kept_nonzero = sum(int(torch.count_nonzero(end[n][expected[n]])) for n in expected)
        assert kept_nonzero == keep  # the kept weights train on (none is exactly 0)
        alive = expected
    sparsities = [m["sparsity"] for m in result.models]
    assert [m["model_id"] for m in result.models] == ["level_00", "level_01", "level_02", "level_03"]
    assert sparsities == pytest.approx([0.0] + [1 - round(0.8 ** k * total) / total for k in (1, 2, 3)])


def test_every_step_of_a_level_uses_the_schedule_replayed_from_the_rewind_epoch(imp_run):
    config, _, recorder = imp_run
    t, epochs = SETTINGS["rewind_epoch"], config.epochs
    for epoch, lr, _ in recorder.steps:
        schedule_epoch = epoch if epoch < epochs else t + (epoch - epochs) % (epochs - t)
        assert lr == pytest.approx(config.lr_at(schedule_epoch))


def test_extended_dense_takes_as_many_steps_per_level_and_prunes_nothing(imp_run):
    config, imp_result, _ = imp_run
    dense = train(TrainConfig(**BASE, mode="extended_dense", mode_settings=SETTINGS), device="cpu")
    assert [m["step"] for m in dense.models] == [m["step"] for m in imp_result.models]
    assert [m["epoch"] for m in dense.models] == [m["epoch"] for m in imp_result.models]
    assert [r["lr"] for r in dense.records] == [r["lr"] for r in imp_result.records]
    assert all(m["sparsity"] < 0.01 for m in dense.models)
    assert dense.models[0] == imp_result.models[0]  # level 0 is the same dense training


def test_a_run_interrupted_in_the_middle_of_a_level_resumes_to_the_same_levels(imp_run, tmp_path):
    config, straight, _ = imp_run
    resumed = stop_and_resume(config, tmp_path, 5)  # inside level 1 (epochs 4 and 5 of 7)
    assert without_timing(resumed.records) == without_timing(straight.records)
    assert resumed.models == straight.models
    for name, tensor in straight.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
    for level in range(SETTINGS["levels"] + 1):
        assert (tmp_path / f"level_{level:02d}.pt").exists()


def test_rewind_epoch_must_be_inside_the_training_run():
    from trainers.config import ConfigError

    with pytest.raises(ConfigError, match=r"^mode_settings\.rewind_epoch: got 3, allowed: an epoch in \[0, 3\)"):
        TrainConfig(**BASE, mode="imp", mode_settings={"rewind_epoch": 3})


LENET = dict(dataset="digits", model="lenet_300_100", width=20, train_size=96, batch_size=32, epochs=2, lr=0.05,
             augment=False, mode="imp")


@pytest.mark.parametrize("output_layer", ["openlth", "prune"])
def test_lenet_keeps_its_output_layer_whole_under_openlths_default(output_layer):
    # OpenLTH's mnist_lenet_300_100 default hyperparameters: pruning_layers_to_ignore='fc.weight'
    # (the output layer). Written here: the output layer is LeNet's last linear layer (fc3); the
    # other weights keep round(0.8^k · N_other) at level k; under "prune" it is ranked with them.
    torch.set_num_threads(1)
    config = TrainConfig(**LENET, mode_settings={"levels": 3, "rewind_epoch": 0, "output_layer": output_layer})
    recorder = Recorder()
    result = train(config, device="cpu", hooks=[recorder])
    weights = dict(prunable_parameters(result.model))
    assert list(weights) == ["fc1.weight", "fc2.weight", "fc3.weight"]
    output = weights["fc3.weight"].detach()
    others = sum(w.numel() for name, w in weights.items() if name != "fc3.weight")
    total = others + output.numel()
    if output_layer == "openlth":
        assert torch.count_nonzero(output) == output.numel()  # untouched by every level
        for level in (1, 2, 3):
            start = config.epochs * level  # epochs done when level k starts (t = 0)
            kept = sum(int(torch.count_nonzero(w)) for n, w in recorder.epoch_end[start + config.epochs].items()
                       if n != "fc3.weight")
            assert kept == round(0.8 ** level * others), level
    else:
        kept = sum(int(torch.count_nonzero(w)) for w in recorder.epoch_end[4 * config.epochs].values())
        assert kept == round(0.8 ** 3 * total)
        assert torch.count_nonzero(output) < output.numel()


def test_output_layer_exemption_follows_openlths_model_defaults():
    from trainers.modes.settings import ImpSettings

    default = ImpSettings()
    assert default.exempts_output_layer("lenet_300_100") and default.exempts_output_layer("vgg16")
    assert not default.exempts_output_layer("resnet20")  # OpenLTH's cifar_resnet prunes its fc
    assert ImpSettings(output_layer="exempt").exempts_output_layer("resnet20")
    assert not ImpSettings(output_layer="prune").exempts_output_layer("vgg16")
    from trainers.config import ConfigError

    with pytest.raises(ConfigError, match=r"^mode_settings\.output_layer: got 'fc', allowed: openlth, prune, exempt$"):
        TrainConfig(**BASE, mode="imp", mode_settings={"output_layer": "fc"})

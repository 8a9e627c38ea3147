"""Training to a target loss (``TrainConfig.stop_at_train_loss``): the stopping rule, against a
run without the rule; resume; packed models stopping on their own; identity and validation."""

import math

import pytest
import torch

from resume_helpers import stop_and_resume, without_timing
from trainers import checkpoint, data
from trainers.config import ConfigError, TrainConfig
from trainers.packed import train_packed
from trainers.train import train

# A small MLP whose full-set training loss falls steadily on the digits (no BatchNorm, so the
# eval-mode loss is a smooth function of the steps): about 1.0 after 4 epochs, 0.1 after 12.
BASE = dict(dataset="digits", model="lenet_300_100", width=32, train_size=200, lr=0.01, batch_size=32,
            augment=False, epochs=14)

pytestmark = pytest.mark.usefixtures("one_thread")


def _first_epoch_at_or_below(losses, target):
    """The paper's rule written out: the first epoch (1-based) whose loss is <= target."""
    for epoch, loss in enumerate(losses, start=1):
        if loss <= target:
            return epoch
    return None


@pytest.fixture(scope="module")
def reference():
    """The run without a target: every epoch's full-set training loss (eval_every = 1)."""
    torch.set_num_threads(1)
    result = train(TrainConfig(**BASE), device="cpu")
    return result


def _target_between(losses, epoch):
    """A target that epoch ``epoch`` reaches and no earlier epoch does, with room on both sides
    (the geometric mean of the loss at ``epoch`` and the lowest loss before it)."""
    before = min(losses[:epoch - 1])
    assert losses[epoch - 1] < before, "the reference loss must fall at that epoch"
    return math.sqrt(losses[epoch - 1] * before)


def test_it_stops_at_the_first_epoch_whose_full_set_training_loss_reaches_the_target(reference, tmp_path):
    losses = [r["train_loss"] for r in reference.records]
    target = _target_between(losses, 9)
    expected = _first_epoch_at_or_below(losses, target)
    assert expected == 9

    result = train(TrainConfig(**BASE, stop_at_train_loss=target), run_dir=tmp_path, device="cpu")
    assert [r["epoch"] for r in result.records] == list(range(1, expected + 1))
    # The same training as the run without the rule, up to the stop.
    assert without_timing(result.records) == without_timing(reference.records[:expected])
    (final,) = result.models
    assert final["model_id"] == "final" and final["epoch"] == expected and final["reached_target"] is True
    assert final["train_loss"] <= target
    stored = checkpoint.load(tmp_path / checkpoint.FINAL)
    assert all(torch.equal(stored[k], v) for k, v in result.model.state_dict().items())
    # Every epoch's record has the full-set training loss, whatever the evaluation cadence.
    sparse = train(TrainConfig(**BASE, stop_at_train_loss=target, eval_every=5, eval_train_subset=20), device="cpu")
    assert [r["train_loss"] for r in sparse.records] == losses[:expected]
    assert math.isfinite(sparse.records[-1]["test_acc"])  # the stopping epoch is evaluated in full


def test_the_cap_ends_a_run_that_never_reaches_its_target(reference):
    result = train(TrainConfig(**{**BASE, "epochs": 3, "stop_at_train_loss": 1e-6}), device="cpu")
    assert len(result.records) == 3
    assert result.models[0]["reached_target"] is False
    assert train(TrainConfig(**{**BASE, "epochs": 3}), device="cpu").models[0]["reached_target"] is None


def test_stop_and_resume_equals_the_uninterrupted_run_bit_for_bit(reference, tmp_path):
    losses = [r["train_loss"] for r in reference.records]
    config = TrainConfig(**BASE, stop_at_train_loss=_target_between(losses, 9))
    straight = train(config, run_dir=tmp_path / "straight", device="cpu")
    resumed = stop_and_resume(config, tmp_path / "stopped", 5)
    assert without_timing(resumed.records) == without_timing(straight.records)
    assert all(torch.equal(v, resumed.model.state_dict()[k]) for k, v in straight.model.state_dict().items())
    # Resumed from the state of the stopping epoch: nothing more is trained.
    again = train(config, run_dir=tmp_path / "straight", device="cpu")
    assert len(again.records) == 9 and again.models == straight.models


def test_ema_yields_both_models_at_the_stop():
    config = TrainConfig(**BASE, mode="ema", stop_at_train_loss=0.5)
    result = train(config, device="cpu")
    stop = len(result.records)
    assert stop < 14
    assert [(m["model_id"], m["epoch"], m["reached_target"]) for m in result.models] == [
        ("final", stop, True), ("ema", stop, True)]


def test_packed_models_stop_on_their_own_as_each_does_alone(reference):
    # Three models of one pack with targets reached at epochs 5, 9 and never (cap 12): the pack
    # shrinks as each stops, and each equals its lone run (float rounding aside: the pack's
    # grouped products sum in another order).
    losses = [r["train_loss"] for r in reference.records]
    targets = [_target_between(losses, 5), _target_between(losses, 9), 1e-6]
    members = [dict(seed=0, stop_at_train_loss=t) for t in targets[:2]] + [dict(seed=0, lr=0.011,
                                                                              stop_at_train_loss=targets[2])]
    configs = [TrainConfig(**{**BASE, "epochs": 12, **m}) for m in members]
    datasets = [data.load(c.dataset, None, train_size=c.train_size, seed=c.seed) for c in configs]
    packed = train_packed(configs, device="cpu", datasets=datasets)
    assert [len(p.records) for p in packed] == [5, 9, 12]
    assert [p.models[0]["reached_target"] for p in packed] == [True, True, False]
    for config, dataset, p in zip(configs, datasets, packed):
        alone = train(config, device="cpu", dataset=dataset)
        assert len(alone.records) == len(p.records)
        for name, tensor in alone.model.state_dict().items():
            assert torch.allclose(tensor, p.model.state_dict()[name], rtol=1e-4, atol=1e-5), name


def test_the_target_is_identity_only_when_set():
    assert TrainConfig(**BASE).trial_id == TrainConfig(**BASE, stop_at_train_loss=None).trial_id
    assert TrainConfig().trial_id == "nin-44136fa355b3678a"  # pinned in test_config.py too
    assert TrainConfig(**BASE, stop_at_train_loss=0.01).trial_id != TrainConfig(**BASE).trial_id
    # People type 1e-2 or an int; the id does not depend on the spelling.
    assert TrainConfig(stop_at_train_loss=1).trial_id == TrainConfig(stop_at_train_loss=1.0).trial_id


@pytest.mark.parametrize("changes, message", [
    (dict(stop_at_train_loss=0.0), "stop_at_train_loss: got 0.0, allowed: a positive number"),
    (dict(stop_at_train_loss=float("nan")), "stop_at_train_loss: got nan, allowed: a positive number"),
    (dict(stop_at_train_loss="low"), "stop_at_train_loss: got 'low', allowed: a positive number"),
    (dict(stop_at_train_loss=0.01, mode="imp", mode_settings={"levels": 1, "rewind_epoch": 0}),
     "stop_at_train_loss: mode imp trains a schedule fixed in epochs, allowed only with mode standard or ema"),
    (dict(stop_at_train_loss=0.01, mode="prune_during_training", mode_settings={"event_epochs": [1]}),
     "stop_at_train_loss: mode prune_during_training trains a schedule fixed in epochs"),
])
def test_a_bad_target_is_a_one_line_error_naming_the_field(changes, message):
    with pytest.raises(ConfigError) as error:
        TrainConfig(**{**BASE, **changes})
    assert str(error.value).startswith(message) and "\n" not in str(error.value)

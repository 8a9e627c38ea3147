import math

import pytest
import torch

from trainers import checkpoint
from trainers.config import TrainConfig
from resume_helpers import stop_and_resume, without_timing
from trainers.train import COMPLETED, DIVERGED, train

SMALL = dict(dataset="digits", model="nin", width=8, depth=2, dropout=0.3, train_size=200,
             epochs=3, lr=0.05, batch_size=32, augment=True, checkpoint_epochs=(1,))




def test_resume_after_an_interruption_equals_never_stopping(tmp_path):
    config = TrainConfig(**SMALL)
    straight = train(config, run_dir=tmp_path / "straight", device="cpu")
    # Between the stop and the resume something else draws from the global RNG; the saved
    # RNG state must make that irrelevant.
    resumed = stop_and_resume(config, tmp_path / "stopped", 1)

    assert without_timing(resumed.records) == without_timing(straight.records)
    for name, tensor in straight.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name


def test_records_hold_every_metric_of_every_epoch():
    result = train(TrainConfig(**{**SMALL, "epochs": 2}), device="cpu")
    assert result.status == COMPLETED
    assert [r["epoch"] for r in result.records] == [1, 2]
    for record in result.records:
        assert set(record) >= {"epoch", "lr", "minibatch_loss", "train_loss", "train_acc", "test_loss",
                               "test_acc", "seconds", "images_per_second"}
        assert 0 <= record["train_acc"] <= 1 and record["images_per_second"] > 0


def test_checkpoints_hold_tensors_only_and_load_with_weights_only(tmp_path):
    config = TrainConfig(**SMALL)
    result = train(config, run_dir=tmp_path, device="cpu")
    init = torch.load(tmp_path / checkpoint.INIT, weights_only=True)
    early = torch.load(tmp_path / checkpoint.early_name(1), weights_only=True)
    final = torch.load(tmp_path / checkpoint.FINAL, weights_only=True)
    state = torch.load(tmp_path / checkpoint.STATE, weights_only=True)
    assert set(init) == set(final) == set(result.model.state_dict())
    key = next(k for k in final if k.endswith("weight"))
    assert not torch.equal(init[key], final[key]) and not torch.equal(early[key], final[key])
    assert torch.equal(final[key], result.model.state_dict()[key])
    assert state["epoch"] == 3 and state["trial_id"] == config.trial_id and "cpu" in state["rng"]


def test_a_diverging_run_is_recorded_not_raised(tmp_path):
    config = TrainConfig(**{**SMALL, "lr": 1e8, "epochs": 3})
    result = train(config, run_dir=tmp_path, device="cpu")
    assert result.status == DIVERGED
    assert result.records[-1]["status"] == DIVERGED
    assert not math.isfinite(result.records[-1]["minibatch_loss"])
    assert not (tmp_path / checkpoint.FINAL).exists()
    again = train(config, run_dir=tmp_path, device="cpu")
    assert again.status == DIVERGED and len(again.records) == len(result.records)


def test_masks_keep_pruned_weights_at_zero_and_hooks_see_every_step():
    config = TrainConfig(**{**SMALL, "epochs": 1})
    torch.manual_seed(0)
    from trainers.train import build_model

    names = [n for n, p in build_model(config, 10).named_parameters() if p.dim() == 4]
    masks = {names[0]: torch.rand_like(dict(build_model(config, 10).named_parameters())[names[0]]) > 0.5}

    class CountSteps:
        steps = 0
        epochs = []

        def on_step_end(self, state):
            self.steps += 1

        def on_epoch_end(self, state, record):
            self.epochs.append(record["epoch"])

    hook = CountSteps()
    result = train(config, device="cpu", masks=masks, hooks=[hook])
    weight = dict(result.model.named_parameters())[names[0]]
    assert torch.all(weight[~masks[names[0]]] == 0)
    assert torch.any(weight[masks[names[0]]] != 0)
    assert hook.steps == math.ceil(200 / 32) and hook.epochs == [1]


def test_resume_refuses_another_trials_state(tmp_path):
    train(TrainConfig(**{**SMALL, "epochs": 1}), run_dir=tmp_path, device="cpu")
    with pytest.raises(checkpoint.CheckpointError, match="belongs to trial"):
        train(TrainConfig(**{**SMALL, "epochs": 1, "seed": 5}), run_dir=tmp_path, device="cpu")


def test_a_corrupt_checkpoint_is_a_one_line_error_naming_the_file(tmp_path):
    bad = tmp_path / "final.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(checkpoint.CheckpointError, match="final.pt"):
        checkpoint.load(bad)


def test_evaluation_cadence_and_train_subset_change_records_not_training(one_thread):
    base = TrainConfig(**{**SMALL, "epochs": 5, "checkpoint_epochs": ()})
    every = train(base, device="cpu")
    sparse = train(TrainConfig(**{**SMALL, "epochs": 5, "checkpoint_epochs": (), "eval_every": 2,
                                  "eval_train_subset": 50}), device="cpu")
    for name, tensor in every.model.state_dict().items():
        assert torch.equal(tensor, sparse.model.state_dict()[name]), name
    evaluated = [r["epoch"] for r in sparse.records if not math.isnan(r["test_loss"])]
    assert evaluated == [2, 4, 5]
    last_every, last_sparse = every.records[-1], sparse.records[-1]
    assert {k: last_sparse[k] for k in ("train_loss", "train_acc", "test_loss", "test_acc")} == \
        {k: last_every[k] for k in ("train_loss", "train_acc", "test_loss", "test_acc")}  # full sets at the end
    assert sparse.records[1]["test_loss"] == every.records[1]["test_loss"]  # the test set is always whole
    assert sparse.records[1]["train_loss"] != every.records[1]["train_loss"]  # the train subset is not
    assert sparse.models == every.models


def test_evaluation_settings_are_not_part_of_the_trial_id():
    assert TrainConfig(**SMALL, eval_every=5, eval_train_subset=100).trial_id == TrainConfig(**SMALL).trial_id

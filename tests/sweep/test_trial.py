"""Crash consistency of a trial's commits to the store (no Ray: sweep.trial is Ray-free).

The store is made to fail at each write of a middle epoch, of the last epoch and of the
finishing step in turn, before or after the write lands; resuming must end with exactly
the files, records and weights of an uninterrupted run.
"""

import pandas as pd
import pytest
import torch

from sweep import trial
from recording_store import Crash, RecordingStore
from sweep.store import Store
from trainers.config import TrainConfig

CONFIG = dict(dataset="digits", model="nin", width=8, depth=2, train_size=96, batch_size=32,
              epochs=3, lr=0.05, dropout=0.2, checkpoint_epochs=(1,))
TIMING = ("seconds", "images_per_second", "finished_at")  # when, not what


def _snapshot(root, trial_id):
    files = {}
    for path in sorted((root / "checkpoints" / trial_id).iterdir()):
        files[path.name] = torch.load(path, weights_only=True)
    epochs = pd.read_parquet(root / "epochs" / f"{trial_id}.parquet").drop(columns=list(TIMING))
    models = pd.read_parquet(root / "models" / f"{trial_id}.parquet")
    return files, epochs, models


def _assert_same(got, expected):
    files, epochs, models = got
    ref_files, ref_epochs, ref_models = expected
    assert sorted(files) == sorted(ref_files)
    for name, tensors in ref_files.items():
        assert files[name].keys() == tensors.keys(), name
        assert all(torch.equal(files[name][k], tensors[k]) for k in tensors), name
    pd.testing.assert_frame_equal(epochs, ref_epochs)
    pd.testing.assert_frame_equal(models, ref_models)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    torch.set_num_threads(1)
    config = TrainConfig(**CONFIG)
    root = tmp_path_factory.mktemp("reference")
    store = RecordingStore(str(root), "exp")
    trial.train_trial(config, store, device="cpu")
    assert trial.is_complete(store, config)
    return config, store.log, _snapshot(root / "exp", config.trial_id)


def _writes_to_break(log):
    """Indices of the writes of epoch 2 (middle), epoch 3 (last) and the finishing step:
    everything after the first epoch's state.pt."""
    commits = [i for i, name in enumerate(log) if name.endswith("state.pt") and not name.startswith("delete")]
    assert len(commits) == 3
    return list(range(commits[0] + 1, len(log)))


def test_the_commit_order_puts_state_last(reference):
    _, log, _ = reference
    # per epoch: checkpoints, records (and models), then the state; finishing deletes it
    assert log[-1].startswith("delete") and log[-1].endswith("state.pt")
    last_epoch = log[log.index(next(n for n in log if n.endswith("final.pt"))):]
    assert [n.split("/")[0] for n in last_epoch[:4]] == ["checkpoints", "epochs", "models", "checkpoints"]
    assert last_epoch[3].endswith("state.pt")


@pytest.mark.parametrize("after", [False, True], ids=["before-write", "after-write"])
def test_a_crash_at_any_write_of_a_middle_or_the_last_epoch_resumes_to_the_same_trial(reference, tmp_path, after):
    config, log, expected = reference
    breaks = _writes_to_break(log)
    assert len(breaks) >= 8
    for index in breaks:
        root = tmp_path / f"{index}"
        crashing = RecordingStore(str(root), "exp", fail_at=index, after=after)
        with pytest.raises(Crash):
            trial.train_trial(config, crashing, device="cpu")
        store = Store(str(root), "exp")
        if not trial.is_complete(store, config):
            trial.train_trial(config, store, device="cpu")
        else:  # the driver's path for a complete trial: drop a state left while finishing
            store.delete(*store.checkpoint_parts(config.trial_id, "state.pt"))
        assert trial.is_complete(store, config), log[index]
        _assert_same(_snapshot(root / "exp", config.trial_id), expected)


def test_a_newly_requested_early_checkpoint_retrains_to_the_same_weights(reference, tmp_path):
    config, _, (files, _, _) = reference
    without_early = TrainConfig(**{**CONFIG, "checkpoint_epochs": ()})
    assert without_early.trial_id == config.trial_id
    store = Store(str(tmp_path), "exp")
    trial.train_trial(without_early, store, device="cpu")
    assert trial.is_complete(store, without_early) and not trial.is_complete(store, config)
    trial.train_trial(config, store, device="cpu")
    assert trial.is_complete(store, config)
    _assert_same(_snapshot(tmp_path / "exp", config.trial_id), reference[2])


@pytest.mark.parametrize("pack", [False, True])
def test_a_store_that_fails_while_a_trial_sets_up_leaves_no_scratch_folder(tmp_path, monkeypatch, pack):
    import tempfile

    class FailingStore(Store):
        def epochs(self, *args, **kwargs):
            raise Crash("epochs")

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    store = FailingStore(str(tmp_path / "store"), "setup")
    configs = [TrainConfig(**CONFIG), TrainConfig(**{**CONFIG, "seed": 1})]
    with pytest.raises(Crash):
        if pack:
            trial.train_pack(configs, store, device="cpu")
        else:
            trial.train_trial(configs[0], store, device="cpu")
    assert list(scratch.iterdir()) == []


def test_a_trial_that_stopped_at_its_target_loss_is_complete_and_says_so(tmp_path):
    from sweep.trials_table import TrialsTable

    torch.set_num_threads(1)
    # An MLP whose training loss falls below 1.0 within 6 of its 14 epochs; the early checkpoint
    # of epoch 13 is never reached, and is not waited for.
    config = TrainConfig(dataset="digits", model="lenet_300_100", width=32, train_size=200, lr=0.01, batch_size=32,
                         augment=False, epochs=14, stop_at_train_loss=1.0, checkpoint_epochs=(1, 13))
    store = Store(str(tmp_path), "exp")
    trial.train_trial(config, store, device="cpu")
    epochs = store.epochs(config.trial_id)
    assert len(epochs) < 14 and epochs["train_loss"].iloc[-1] <= 1.0 < epochs["train_loss"].iloc[:-1].min()
    assert trial.is_complete(store, config)
    assert sorted(store.list("checkpoints", config.trial_id)) == ["epoch_1.pt", "final.pt", "init.pt"]
    models = store.models(config.trial_id)
    assert models["reached_target"].tolist() == [True] and models["epoch"].tolist() == [len(epochs)]
    row = TrialsTable(store, [config]).frame().iloc[0]
    assert (row["status"], row["epochs_done"], row["epochs_total"], row["reached_target"]) == (
        "completed", len(epochs), 14, True)
    assert row["stop_at_train_loss"] == 1.0

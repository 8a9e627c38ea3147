"""TrialsTable from one read of each table (sweep/trials_table.py): every trial's status equals
what the per-trial rule (sweep.trial.is_complete) says, on a store with trials in every state,
compacted or not, and a refresh of one trial gives the same row."""

from __future__ import annotations

import pandas as pd
import pytest

from sweep import compact, trial
from sweep.store import COMPLETED, DIVERGED, FINISHED, INCOMPLETE, PENDING, Store
from sweep.trials_table import TrialsTable
from trainers import checkpoint
from trainers.config import TrainConfig


def _config(width: int, **changes) -> TrainConfig:
    return TrainConfig.from_dict({"dataset": "digits", "model": "nin", "width": width, "depth": 1, "epochs": 3,
                                  "checkpoint_epochs": [1], **changes})


def _epochs(store, config, n, *, status="completed", loss=0.5):
    store.write_epochs(config.trial_id, [
        {"epoch": e, "lr": 0.1, "minibatch_loss": loss, "train_loss": loss, "train_acc": 0.9, "test_loss": 0.6,
         "test_acc": 0.8, "seconds": 2.0, "images_per_second": 10.0,
         "status": status if e == n else "completed", "host": "h", "device": "cpu",
         "finished_at": pd.Timestamp("2026-01-01 00:00:10", tz="UTC") + pd.Timedelta(seconds=e)}
        for e in range(1, n + 1)])


def _models(store, config, ids=("final",)):
    store.write_models(config.trial_id, [{"model_id": m, "epoch": 3, "step": 30, "weights": 10, "sparsity": 0.0,
                                          "stability": None, "reached_target": None, "train_loss": 0.5,
                                          "train_acc": 0.9, "test_loss": 0.6, "test_acc": 0.8} for m in ids])


def _files(store, config, names):
    for name in names:
        store.write_bytes(b"x", "checkpoints", config.trial_id, name)


ALL = ("init.pt", "epoch_1.pt", "final.pt")


def _build(root) -> tuple:
    store = Store(str(root), "tt")
    states = {}
    c = _config(4); _epochs(store, c, 3); _models(store, c); _files(store, c, ALL); states[c.trial_id] = COMPLETED
    c = _config(5); _epochs(store, c, 2); _files(store, c, ALL[:2] + ("state.pt",)); states[c.trial_id] = INCOMPLETE
    c = _config(6); states[c.trial_id] = PENDING
    c = _config(7); _epochs(store, c, 2, status="diverged", loss=float("nan")); states[c.trial_id] = DIVERGED
    c = _config(8); _epochs(store, c, 3); _files(store, c, ALL); states[c.trial_id] = INCOMPLETE  # no models table
    c = _config(9); _epochs(store, c, 3); _models(store, c); _files(store, c, ("init.pt", "final.pt"))
    states[c.trial_id] = INCOMPLETE  # the early checkpoint is missing
    c = _config(10); _epochs(store, c, 3); _models(store, c); _files(store, c, ALL + (trial.PREVIOUS_STATE,))
    states[c.trial_id] = INCOMPLETE  # its pack has not finished committing
    c = _config(11, stop_at_train_loss=0.6); _epochs(store, c, 2); _models(store, c); _files(store, c, ALL)
    states[c.trial_id] = COMPLETED  # stopped at its target
    c = _config(12, mode="ema"); _epochs(store, c, 3); _models(store, c, ("final", "ema"))
    _files(store, c, ALL); states[c.trial_id] = INCOMPLETE  # ema.pt missing
    configs = [_config(w) for w in range(4, 11)] + [_config(11, stop_at_train_loss=0.6), _config(12, mode="ema")]
    return store, configs, states


@pytest.mark.parametrize("compacted", [False, True])
def test_every_status_from_one_read_of_each_table_equals_the_per_trial_rule(tmp_path, compacted):
    store, configs, states = _build(tmp_path)
    if compacted:
        assert compact.compact(store, {c.trial_id for c in configs}, minimum=1)
    table = TrialsTable(store, configs)
    for config in configs:
        row = table.rows[config.trial_id]
        assert row.status == states[config.trial_id], config.trial_id
        assert (row.status in FINISHED) == trial.is_complete(store, config), config.trial_id
    frame = table.frame()
    for config in configs:  # one trial read again gives the same row
        table.refresh(config.trial_id)
    pd.testing.assert_frame_equal(table.frame(), frame)
    completed = table.rows[configs[0].trial_id]
    assert completed.epochs_done == 3 and completed.final["epoch"] == 3
    assert completed.started_at == pd.Timestamp("2026-01-01 00:00:09", tz="UTC")
    assert table.state.training_seconds == 2.0 * (3 + 2 + 2 + 3 + 3 + 3 + 2 + 3)


def test_the_table_of_a_compacted_store_equals_that_of_the_uncompacted_one(tmp_path):
    store, configs, _ = _build(tmp_path / "a")
    before = TrialsTable(store, configs).frame()
    compact.compact(store, {c.trial_id for c in configs}, minimum=1)
    pd.testing.assert_frame_equal(TrialsTable(store, configs).frame(), before)


def test_status_counts_a_trial_that_stopped_at_its_target_as_done_not_as_epochs_left(tmp_path):
    from sweep import config as sweep_config
    from sweep import driver
    from sweep.trials_table import status_text

    document = {"experiment": "st", "dataset": "digits", "model": "nin",
                "train": {"depth": 1, "epochs": 3, "stop_at_train_loss": 0.6}, "grid": {"width": [4, 5]}}
    config = sweep_config.parse(document)
    store = Store(str(tmp_path), "st")
    store.write_text(driver._provenance(config, driver.provenance.now()), "sweep.yaml")
    stopped, pending = config.trials()
    _epochs(store, stopped, 2); _models(store, stopped); _files(store, stopped, ("init.pt", "final.pt"))
    lines = status_text(store).splitlines()
    assert lines[1] == "epochs: 2 done, at most 5 in all (trials stop at training loss 0.6)"

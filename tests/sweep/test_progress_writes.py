"""The Tune callback rewrites trials.parquet after every 1% of the trials finished (or a
minute), not after each one: O(trials) rewrites of an O(trials) table would be quadratic."""

from __future__ import annotations

import pytest
from ray.tune.experiment import Trial

from sweep import progress
from sweep.store import Store
from trainers.config import TrainConfig

CONFIGS = [TrainConfig(dataset="digits", model="nin", width=4, depth=1, epochs=1, seed=s) for s in range(300)]


def _tune_trial(config) -> Trial:
    trial = Trial("run_trial", config={"trial": {"trial_id": config.trial_id, "trial_ids": [config.trial_id]}},
                  stub=True)
    trial.set_status(Trial.TERMINATED)
    return trial


def test_trials_parquet_is_rewritten_after_every_percent_of_the_trials(tmp_path, monkeypatch):
    monkeypatch.setattr(progress, "WRITE_SECONDS", float("inf"))  # only the count decides here
    callback = progress._tune_callback_class()(str(tmp_path), "w", [c.to_dict() for c in CONFIGS], every=3600)
    callback.setup()
    writes = []
    real = callback.table.write
    monkeypatch.setattr(callback.table, "write", lambda: writes.append(1) or real())
    trials = [_tune_trial(c) for c in CONFIGS]
    for trial in trials[:7]:
        callback.on_trial_complete(0, trials, trial)
    assert callback.write_every == 3 and len(writes) == 2  # after the 3rd and the 6th
    callback.on_experiment_end(trials)
    assert len(writes) == 3
    assert len(Store(str(tmp_path), "w").trials()) == 300


def test_the_driver_hands_its_table_to_the_callback(tmp_path):
    store = Store(str(tmp_path), "w")
    from sweep.trials_table import TrialsTable

    table = TrialsTable(store, CONFIGS[:4])
    callback = progress._tune_callback_class()(str(tmp_path), "w", [c.to_dict() for c in CONFIGS[:4]],
                                               table=progress.share_table(table))
    callback.setup()
    assert callback.table is table
    again = progress._tune_callback_class()(str(tmp_path), "w", [c.to_dict() for c in CONFIGS[:4]], table="gone")
    again.setup()  # a table not found (another process) is rebuilt from the store
    assert again.table is not table and list(again.table.rows) == list(table.rows)

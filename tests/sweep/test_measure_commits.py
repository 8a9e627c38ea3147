"""Crash consistency of the measures job's writes, on a real local Ray.

A family's long tables are written before its rows, and the rows are the commit marker of
(model, family) (sweep/measure_job.py). The store is made to fail at every write of the job
for ``el2n`` (its per-example table) and ``pruning_vs_perturbation`` (its per-fraction table)
in turn, before or after the write lands (an S3 write that hangs and fails, a kill); running
the job again must leave exactly the rows and tables of an uninterrupted run.
"""

import shutil

import pandas as pd
import pytest
import yaml

from sweep import config as sweep_config
from sweep import driver
from sweep import measure_job as job
from recording_store import Crash, RecordingStore
from sweep.store import Store

FAMILIES = "el2n,pruning_vs_perturbation"
SWEEP = {
    "experiment": "zoo", "dataset": "digits", "model": "nin",
    "train": {"epochs": 2, "lr": 0.05, "train_size": 96, "batch_size": 32, "depth": 2, "width": 8},
    "grid": {"dropout": [0.0, 0.5]}, "seeds": [0], "checkpoint_epochs": [1], "resources": {"cpus": 1},
    "measures": {"pruning_vs_perturbation": {"fractions": [1.0, 0.5, 0.0]}},
}
TABLES = ("el2n", "pruning_curves")


def _contents(root):
    """The job's output: every measure row (without its wall time) and every long table."""
    measures = pd.read_parquet(root / "measures").drop(columns=["seconds"])
    measures = measures.sort_values(["trial_id", "model_id", "family", "measure"]).reset_index(drop=True)
    tables = {}
    for name in TABLES:
        for path in sorted((root / name).glob("*.parquet")):
            tables[(name, path.name)] = pd.read_parquet(path)
    return measures, tables


def _assert_same(got, expected, where):
    measures, tables = got
    ref_measures, ref_tables = expected
    pd.testing.assert_frame_equal(measures, ref_measures, obj=f"{where}: measures")
    assert sorted(tables) == sorted(ref_tables), where
    for key, frame in ref_tables.items():
        pd.testing.assert_frame_equal(tables[key], frame, obj=f"{where}: {key}")


@pytest.fixture(scope="module")
def trained(ray_address, tmp_path_factory):
    storage = tmp_path_factory.mktemp("trained")
    path = storage / "zoo.yaml"
    path.write_text(yaml.safe_dump(SWEEP))
    assert driver.run(sweep_config.load(str(path)), storage=str(storage)) == {"completed": 2}
    return storage


@pytest.fixture(scope="module")
def reference(trained, tmp_path_factory):
    storage = tmp_path_factory.mktemp("reference")
    shutil.copytree(trained / "zoo", storage / "zoo")
    log = []
    original = job.Store
    job.Store = lambda s, e: RecordingStore(s, e, log=log)
    try:
        assert job.run("zoo", storage=str(storage), measures=FAMILIES) == {"ok": 4, "error": 0}
    finally:
        job.Store = original
    return log, _contents(storage / "zoo")


def test_the_job_writes_each_models_tables_before_its_rows(reference):
    log, _ = reference
    assert [name.split("/")[0] for name in log] == ["el2n", "pruning_curves", "measures"] * 2


@pytest.mark.parametrize("after", [False, True], ids=["before-write", "after-write"])
def test_a_failure_at_any_write_of_the_job_is_repaired_by_running_it_again(trained, reference, tmp_path,
                                                                        monkeypatch, after):
    log, expected = reference
    for index in range(len(log)):
        storage = tmp_path / f"{index}"
        shutil.copytree(trained / "zoo", storage / "zoo")
        with monkeypatch.context() as patch:
            patch.setattr(job, "Store", lambda s, e: RecordingStore(s, e, log=[], fail_at=index, after=after))
            with pytest.raises(Crash):
                job.run("zoo", storage=str(storage), measures=FAMILIES)
        counts = job.run("zoo", storage=str(storage), measures=FAMILIES)
        assert counts["error"] == 0, log[index]
        _assert_same(_contents(storage / "zoo"), expected, f"failure {'after' if after else 'at'} {log[index]}")
        # Nothing is left to do.
        assert job.run("zoo", storage=str(storage), measures=FAMILIES) == {"ok": 0, "error": 0}

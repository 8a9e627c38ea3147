"""A real sweep, its measures and its analysis on a store compacted at every step
(GENZOO_COMPACT_MIN_FILES=1) against the same on a store never compacted: the launch's plan
(pending trials), status, the measure job's plan, every table and the analysis are equal."""

from __future__ import annotations

import os

import pandas as pd
import pytest
import yaml

from sweep import compact, driver
from sweep import config as sweep_config
from sweep import measure_job
from sweep.analyze import run as analyze_run
from sweep.store import Store
from sweep.trials_table import TrialsTable, status_text

SWEEP = {
    "experiment": "cz", "dataset": "digits", "model": "nin",
    "train": {"epochs": 2, "lr": 0.05, "train_size": 96, "batch_size": 32, "depth": 1, "width": 6},
    "grid": {"weight_decay": [0.0, 0.001], "dropout": [0.0, 0.3]}, "seeds": [0],
    "checkpoint_epochs": [1], "resources": {"cpus": 1},
}
TIMING = ("seconds", "images_per_second", "finished_at", "started_at", "host", "device")


def _drop(frame):
    return frame.drop(columns=[c for c in TIMING if c in frame.columns])


@pytest.fixture(scope="module")
def zoos(ray_address, tmp_path_factory):
    root = tmp_path_factory.mktemp("zoos")
    path = root / "cz.yaml"
    path.write_text(yaml.safe_dump(SWEEP))
    stores = {}
    for name, minimum in (("compacted", "1"), ("plain", "1000")):
        os.environ[compact.ENV_MIN_FILES] = minimum
        try:
            storage = str(root / name)
            assert driver.run(sweep_config.load(str(path)), storage=storage, out=lambda line: None) == \
                {"completed": 4}
            assert measure_job.run("cz", storage=storage, measures="norms,el2n", out=lambda line: None)["error"] == 0
            # A second job adds a family to trials whose measures were compacted by the first.
            assert measure_job.run("cz", storage=storage, measures="training", out=lambda line: None)["error"] == 0
            analyze_run("cz", storage=storage)
        finally:
            del os.environ[compact.ENV_MIN_FILES]
        stores[name] = Store(storage, "cz")
    return stores


def test_the_compacted_store_holds_parts_and_the_plain_one_files(zoos):
    for folder in ("epochs", "models", "measures", "el2n"):
        names = zoos["compacted"].list(folder, suffix=".parquet")
        assert len(names) == 1 and compact.is_part(names[0]), (folder, names)
        assert len(zoos["plain"].list(folder)) == 4
    measures = zoos["compacted"].measures()
    assert set(measures["family"]) == {"norms", "el2n", "training"}  # the first job's rows kept
    assert not measures.duplicated(["trial_id", "model_id", "measure"]).any()


def test_tables_status_plans_and_analysis_are_equal(zoos):
    a, b = zoos["compacted"], zoos["plain"]
    pd.testing.assert_frame_equal(_drop(a.trials()), _drop(b.trials()))
    pd.testing.assert_frame_equal(_drop(a.epochs()), _drop(b.epochs()))
    pd.testing.assert_frame_equal(_drop(a.models()), _drop(b.models()))
    pd.testing.assert_frame_equal(_drop(a.measures()), _drop(b.measures()))
    pd.testing.assert_frame_equal(a.read_folder("el2n"), b.read_folder("el2n"))
    # Raw folder reads at rest, sorted: the same rows.
    for folder, keys in (("epochs", ["trial_id", "epoch"]), ("measures", ["trial_id", "model_id", "measure"])):
        raw = [_drop(pd.read_parquet(s.path(folder))).sort_values(keys).reset_index(drop=True) for s in (a, b)]
        pd.testing.assert_frame_equal(*raw)

    def status(store):
        return [line.replace(store.uri, "URI") for line in status_text(store).splitlines()
                if not line.startswith("last launch")]

    assert status(a) == status(b)
    config = sweep_config.read_resolved_config(a)
    tables = [TrialsTable(s, config.trials()) for s in (a, b)]
    assert [r.status for r in tables[0].rows.values()] == [r.status for r in tables[1].rows.values()]
    pd.testing.assert_frame_equal(_drop(tables[0].frame()), _drop(tables[1].frame()))
    models = [(t, "final") for t in a.trials()["trial_id"]]
    configs = {c.trial_id: c for c in config.trials()}
    settings = measure_job.resolve_settings(["norms", "el2n", "training", "flatness"], config.measures)
    plans = [measure_job.plan(s, models, ["norms", "el2n", "training", "flatness"], settings, configs)
             for s in (a, b)]
    assert plans[0] == plans[1] and plans[0][1]["stored"] == 12
    assert b.exists("analysis", "table1.csv") and b.exists("analysis", "table2.csv")
    for name in ("table1.csv", "table2.csv", "table3.csv", "measure_settings.csv"):
        if b.exists("analysis", name):
            assert a.read_text("analysis", name).replace("/compacted/", "/plain/") == \
                b.read_text("analysis", name), name


def test_a_resume_of_the_compacted_store_has_nothing_to_train_and_writes_nothing(zoos):
    store = zoos["compacted"]
    before = {folder: store.list(folder) for folder in ("epochs", "models", "measures")}
    assert driver.resume("cz", storage=store.storage, out=lambda line: None) == {"completed": 4}
    assert {folder: store.list(folder) for folder in ("epochs", "models", "measures")} == before

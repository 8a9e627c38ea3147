"""A store written by genzoo's first layout (version 1, tests/fixtures/store_v1: made by that
version's `sweep run` and `measure`) is still read by status, measure, resume and analyze,
which upgrade it in place first (sweep/migrate.py)."""

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from sweep.cli import main
from sweep.config import read_resolved_config
from sweep.migrate import store_version, upgrade, v1_trial_id
from sweep.store import STORE_VERSION, Store

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "store_v1"


@pytest.fixture
def v1(tmp_path):
    storage = tmp_path / "store"
    shutil.copytree(FIXTURE, storage)
    return storage


def test_status_upgrades_a_v1_store_and_keeps_every_value(v1, capsys):
    root = v1 / "tiny"
    old_measures = pd.read_parquet(root / "measures").sort_values(["trial_id", "measure"])
    config = read_resolved_config(Store(str(v1), "tiny"))
    renamed = {v1_trial_id(c): c.trial_id for c in config.trials()}
    assert sorted(renamed) == sorted(p.stem for p in (root / "epochs").iterdir())
    assert store_version(Store(str(v1), "tiny")) == 1

    assert main(["sweep", "status", "tiny", "--storage", str(v1)]) == 0
    out = capsys.readouterr().out
    assert "upgrading the store from layout version 1" in out and "completed 4" in out
    assert store_version(Store(str(v1), "tiny")) == STORE_VERSION

    new_ids = sorted(renamed.values())
    assert sorted(p.stem for p in (root / "epochs").iterdir()) == new_ids
    assert sorted(os.listdir(root / "checkpoints")) == new_ids
    for trial_id in new_ids:
        assert sorted(os.listdir(root / "checkpoints" / trial_id)) == ["epoch_1.pt", "final.pt", "init.pt"]
    models = pd.read_parquet(root / "models")
    assert sorted(models["trial_id"]) == new_ids and set(models["model_id"]) == {"final"}
    trials = pd.read_parquet(root / "trials.parquet")
    assert sorted(trials["trial_id"]) == new_ids
    epochs = pd.read_parquet(root / "epochs")
    last = epochs.sort_values("epoch").groupby("trial_id").last()
    pd.testing.assert_series_equal(models.set_index("trial_id")["test_acc"].sort_index(),
                                   last["test_acc"].sort_index(), check_names=False)

    measures = pd.read_parquet(root / "measures").sort_values(["trial_id", "measure"])
    assert set(measures["model_id"]) == {"final"}
    assert sorted(measures["trial_id"]) == sorted(renamed[t] for t in old_measures["trial_id"])
    merged = old_measures.assign(trial_id=old_measures["trial_id"].map(renamed)).merge(
        measures, on=["trial_id", "measure"], suffixes=("_old", ""))
    assert len(merged) == len(old_measures)
    assert (merged["value_old"] == merged["value"]).all()
    el2n = pd.read_parquet(root / "el2n")
    assert sorted(el2n["trial_id"].unique()) == new_ids and set(el2n["model_id"]) == {"final"}

    assert main(["sweep", "status", "tiny", "--storage", str(v1)]) == 0
    assert "upgrading" not in capsys.readouterr().out
    assert not upgrade(Store(str(v1), "tiny"), out=lambda line: None)


def test_measure_resume_and_analyze_read_a_v1_store(v1, capsys):
    assert main(["measure", "tiny", "--measures", "norms,training,el2n", "--storage", str(v1)]) == 0
    # The version-1 norms rows predate the fold_batchnorm setting (raw weights then, folded
    # BatchNorm now): computed with other settings, so computed again; the rest is kept.
    assert "4 (model, family) tasks to run over 4 models of 4 trials; 8 already stored, " \
           "4 stored with other settings (recomputed)" in capsys.readouterr().out
    assert main(["measure", "tiny", "--measures", "norms,training,el2n", "--storage", str(v1)]) == 0
    assert "0 (model, family) tasks to run over 4 models" in capsys.readouterr().out
    assert main(["sweep", "resume", "tiny", "--storage", str(v1)]) == 0
    assert "nothing to train" in capsys.readouterr().out
    assert main(["analyze", "tiny", "--storage", str(v1), "--target", "test_loss"]) == 0
    table1 = pd.read_csv(v1 / "tiny" / "analysis" / "table1.csv")
    assert {"sum_of_fro", "train_loss", "el2n"} <= set(table1["measure"])
    assert set(table1["n_models"]) == {4}


def test_a_store_newer_than_this_genzoo_is_refused(v1, capsys):
    sweep_yaml = v1 / "tiny" / "sweep.yaml"
    document = yaml.safe_load(sweep_yaml.read_text())
    document["store_version"] = STORE_VERSION + 1
    sweep_yaml.write_text(yaml.safe_dump(document))
    assert main(["sweep", "status", "tiny", "--storage", str(v1)]) == 2
    assert "newer than this genzoo" in capsys.readouterr().err

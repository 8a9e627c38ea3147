"""Provenance: versions, git commit, device, host and times in sweep.yaml (ignored when the
config is read back) and handed to the report."""

import re
import subprocess

import pandas as pd
import pytest
import yaml

from sweep import analyze, driver, provenance
from sweep import config as sweep_config
from sweep.store import Store

TINY = {"experiment": "p", "train": {"epochs": 1, "train_size": 64, "width": 8, "depth": 2}, "seeds": [0, 1]}
DEPENDENCIES = ("python", "torch", "ray", "numpy", "pandas", "pyarrow", "scipy", "scikit-learn", "matplotlib",
                "pyyaml")


def test_versions_name_every_dependency():
    versions = provenance.versions()
    assert tuple(versions) == DEPENDENCIES
    assert all(isinstance(v, str) and v[0].isdigit() for v in versions.values())


def test_git_commit_in_a_checkout_and_none_elsewhere(tmp_path, monkeypatch):
    commit = provenance.git_commit()
    assert commit is None or re.fullmatch(r"[0-9a-f]{40}", commit)
    assert provenance.git_commit(tmp_path) is None
    (tmp_path / ".git").mkdir()

    def slow(*args, **kwargs):
        raise subprocess.TimeoutExpired(args[0], kwargs["timeout"])

    monkeypatch.setattr(subprocess, "run", slow)
    assert provenance.git_commit(tmp_path) is None


def test_device_name_of_the_cpu():
    assert provenance.device_name("cpu").startswith("cpu (")


def _started(store, config):
    started, finished = provenance.now(), provenance.now()
    store.write_text(driver._provenance(config, started, finished), "sweep.yaml")
    return started, finished


def test_sweep_yaml_records_provenance_and_reads_back_as_the_same_sweep(tmp_path):
    config = sweep_config.parse(TINY)
    store = Store(str(tmp_path), "p")
    started, finished = _started(store, config)
    document = yaml.safe_load(store.read_text("sweep.yaml"))
    block = document["provenance"]
    assert set(block) >= {"genzoo", "host", "device", "platform", "started_at", "finished_at"}
    assert block["started_at"] == started.isoformat() and block["finished_at"] == finished.isoformat()
    assert block.get("git_commit") == provenance.git_commit()
    assert tuple(document["versions"]) == DEPENDENCIES
    again = sweep_config.read_resolved_config(store)
    assert [t.trial_id for t in again.trials()] == [t.trial_id for t in config.trials()]
    recorded = provenance.recorded(store)
    assert recorded["host"] == block["host"] and recorded["versions"] == document["versions"]


def test_analyze_hands_the_provenance_to_the_report(tmp_path, monkeypatch):
    config = sweep_config.parse(TINY)
    store = Store(str(tmp_path), "p")
    _started(store, config)
    seen = {}

    class Stop(Exception):
        pass

    def fake_analyze(trials, measures, out_dir, options, **kwargs):
        seen["settings"] = options.settings
        raise Stop

    monkeypatch.setattr(analyze, "zoo_frames", lambda *a, **k: (pd.DataFrame(), pd.DataFrame(), {}))
    monkeypatch.setattr(analyze, "analyze", fake_analyze)
    with pytest.raises(Stop):
        analyze.run("p", storage=str(tmp_path))
    assert seen["settings"]["provenance"] == provenance.recorded(store)
    assert "measures" in seen["settings"]


def test_a_run_with_nothing_to_train_records_start_end_and_each_trials_host(tmp_path):
    """driver.run without Ray: the one trial is trained beforehand, so the run only writes
    sweep.yaml and trials.parquet."""
    import torch

    from sweep import trial

    config = sweep_config.parse({**TINY, "train": {**TINY["train"], "batch_size": 32}, "seeds": [0]})
    (only,) = config.trials()
    store = Store(str(tmp_path), "p")
    torch.set_num_threads(1)
    trial.train_trial(only, store, device="cpu")
    assert driver.run(config, storage=str(tmp_path), out=lambda line: None) == {"completed": 1}
    block = yaml.safe_load(store.read_text("sweep.yaml"))["provenance"]
    assert block["started_at"] < block["finished_at"]
    row = store.trials().iloc[0]
    assert row["host"] == provenance.host() and row["device"].startswith("cpu")
    assert row["started_at"] < row["finished_at"] and row["status"] == "completed"

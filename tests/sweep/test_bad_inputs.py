"""Bad inputs found by the campaign of issue 23: each is one line on stderr and exit code 2, in
bounded time, before anything is written (no Ray needed: they are refused before it starts)."""

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from sweep.cli import main

REPO = Path(__file__).resolve().parents[2]
SWEEP = {
    "experiment": "bad", "dataset": "digits", "model": "nin",
    "train": {"epochs": 2, "lr": 0.05, "train_size": 64, "batch_size": 32, "depth": 2},
    "grid": {"width": [8]}, "seeds": [0], "resources": {"cpus": 1},
}


def _file(tmp_path, **changes):
    document = {**SWEEP, **changes}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(document))
    return str(path)


def _one_line_exit_2(capsys, argv, *expected):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("genzoo: error: "), err
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("changes, expected", [
    ({"measures": {"margins": {"num_examples": -5}}},
     "measures.margins.num_examples: got -5, allowed: an integer >= 1"),
    ({"measures": {"pruning_vs_perturbation": {"fractions": [1.0, 2.0]}}},
     "measures.pruning_vs_perturbation.fractions: got [1.0, 2.0], allowed: a non-empty list of numbers in [0, 1]"),
    ({"train": {**SWEEP["train"], "train_size": 100000}},
     "train.train_size: got 100000, allowed: at most 1437 (the training set of digits)"),
    ({"grid": {"width": [8, 1000000000]}}, "grid.width: got 1000000000, which gives nin"),
    ({"dataset": "mnist"}, "train.model: nin takes 3x32x32 images and mnist's are 1x28x28"),
    ({"model": "mcnn"}, "train.depth: got 2, but model mcnn has no depth"),
    ({"resources": {"cpus": float("inf")}}, "resources.cpus: got inf, allowed: a number > 0"),
    ({"resources": {"cpus": 1, "gpus": float("nan")}}, "resources.gpus: got nan"),
])
@pytest.mark.parametrize("command", ["plan", "run"])
def test_a_bad_sweep_file_is_refused_by_plan_and_run_in_one_line(tmp_path, capsys, changes, expected, command):
    storage = tmp_path / "store"
    argv = ["sweep", command, _file(tmp_path, **changes)] + (["--storage", str(storage)] if command == "run" else [])
    _one_line_exit_2(capsys, argv, expected)
    assert not storage.exists()


def test_cpus_nan_is_refused_in_bounded_time_and_writes_nothing(tmp_path):
    # It used to write sweep.yaml, trials.parquet and _tune/ and then wait forever.
    path = tmp_path / "nan.yaml"
    path.write_text(yaml.safe_dump({**SWEEP, "resources": {}}).replace("resources: {}", "resources: {cpus: .nan}"))
    storage = tmp_path / "store"
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "sweep.cli", "sweep", "run", str(path), "--storage", str(storage)],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == ["genzoo: error: resources.cpus: got nan, allowed: a number > 0"]
    assert time.monotonic() - started < 120
    assert not storage.exists()


@pytest.fixture
def started(tmp_path):
    """An experiment with its sweep.yaml (what `measure` reads first)."""
    from sweep import config as sweep_config
    from sweep.store import STORE_VERSION, Store

    store = Store(str(tmp_path / "store"), "bad")
    document = {**sweep_config.parse(SWEEP).to_dict(), "store_version": STORE_VERSION}
    store.write_text(yaml.safe_dump(document), "sweep.yaml")
    return tmp_path / "store"


def _listing(folder):
    return sorted((str(p.relative_to(folder)), p.stat().st_mtime_ns) for p in folder.rglob("*"))


@pytest.mark.parametrize("setting, expected", [
    ("margins.num_examples=-3", "measures.margins.num_examples: got -3, allowed: an integer >= 1"),
    ("flatness.z=0", "measures.flatness.z: got 0.0, allowed: a number > 0"),
    ("flatness.eps_max=0.001", "measures.flatness.eps_max: got 0.001, allowed: a number >= eps_step (0.01)"),
])
def test_a_bad_measure_setting_is_refused_before_the_job_starts(started, capsys, setting, expected):
    before = _listing(started)
    _one_line_exit_2(capsys, ["measure", "bad", "--storage", str(started), "--set", setting], expected)
    assert _listing(started) == before


@pytest.mark.parametrize("argv", [
    ["sweep", "run", "SWEEP_FILE", "--storage", ""],
    ["sweep", "resume", "bad", "--storage", ""],
    ["sweep", "status", "bad", "--storage", ""],
    ["measure", "bad", "--storage", ""],
    ["analyze", "bad", "--storage", "  "],
])
def test_an_empty_storage_is_refused_not_read_as_results(tmp_path, capsys, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GENZOO_STORAGE", raising=False)
    argv = [_file(tmp_path) if a == "SWEEP_FILE" else a for a in argv]
    _one_line_exit_2(capsys, argv, "storage: got '", "allowed: a path or a URI")
    assert not (tmp_path / "results").exists()


def test_resume_of_an_experiment_that_never_wrote_says_what_to_run(tmp_path, capsys):
    _one_line_exit_2(capsys, ["sweep", "resume", "bad", "--storage", str(tmp_path / "store")],
                     "has no sweep.yaml", "start it with `genzoo sweep run PRESET|FILE`")
    assert not (tmp_path / "store").exists()

"""Measures while the sweep runs (sweep/measure_follow.py): `sweep run --measure` measures each
model as its trial completes; the rows equal those of the separate job; a driver killed mid-run
resumes both, and nothing stored is computed again (issue 26, item 4)."""

import os
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml

from sweep import config as sweep_config
from sweep import driver, measure_job
from sweep.store import Store

FAMILIES = "norms,training,el2n,prunability,random_prunability"
TINY = {
    "experiment": "follow", "dataset": "digits", "model": "nin",
    "train": {"epochs": 2, "lr": 0.05, "train_size": 32, "batch_size": 32, "depth": 2},
    "grid": {"width": [4, 6]}, "seeds": [0], "checkpoint_epochs": [1], "resources": {"cpus": 1},
    # What `genzoo measure` and `--measure` compute by default (the sweep file's choice).
    "measures": {"families": FAMILIES.split(","), "prunability": {"batch_size": 256}},
}
KEY = ["trial_id", "model_id", "family", "measure"]


def _values(frame):
    return frame.sort_values(KEY).set_index(KEY)[["value", "status"]]


def test_sweep_run_measure_stores_what_the_separate_job_stores(ray_address, tmp_path):
    config = sweep_config.parse(TINY)
    storage = tmp_path / "store"
    lines = []
    counts = driver.run(config, storage=str(storage), measure=True, out=lines.append)
    assert counts == {"completed": 2}
    assert any("following the sweep" in line for line in lines)
    followed = Store(str(storage), "follow").measures()
    assert set(followed["status"]) == {"ok"}
    assert followed.groupby(["trial_id", "model_id", "family", "measure"]).size().max() == 1
    assert set(followed["family"]) == set(FAMILIES.split(","))
    assert followed["trial_id"].nunique() == 2

    # The separate job on a copy, from scratch: the same values.
    shutil.copytree(storage, tmp_path / "separate")
    assert measure_job.run("follow", storage=str(tmp_path / "separate"), force=True,
                           out=lambda line: None)["error"] == 0
    separate = Store(str(tmp_path / "separate"), "follow").measures()
    pd.testing.assert_frame_equal(_values(followed), _values(separate))
    # And a separate job after the follower finds everything stored.
    lines.clear()
    assert measure_job.run("follow", storage=str(storage), out=lines.append) == {"ok": 0, "error": 0}
    assert "0 (model, family) tasks to run" in lines[0]
    # A standalone follower (genzoo measure --follow) on a finished sweep ends at once, computing nothing.
    from sweep import measure_follow

    lines.clear()
    assert measure_follow.follow("follow", storage=str(storage), poll_seconds=0.1, out=lines.append) == {"ok": 0,
                                                                                                         "error": 0}
    assert f"{len(followed.drop_duplicates(['trial_id', 'model_id', 'family']))} (model, family) pairs were already " \
           f"stored" in lines[-1] or any("already stored" in line for line in lines)


@pytest.mark.slow  # 15 to 50 s: the full suite stays under 10 minutes on 2 idle cores
def test_a_driver_killed_mid_run_resumes_training_and_measures_without_computing_anything_twice(ray_address,
                                                                                                 tmp_path):
    document = {**TINY, "grid": {"width": [4, 6, 8]}, "train": {**TINY["train"], "epochs": 3}}
    path = tmp_path / "follow.yaml"
    path.write_text(yaml.safe_dump(document))
    storage = tmp_path / "store"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    command = [sys.executable, "-m", "sweep.cli", "sweep", "run", str(path), "--storage", str(storage), "--measure",
               "--address", ray_address]
    log = open(tmp_path / "driver.log", "wb")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    measures = storage / "follow" / "measures"
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline and not list(measures.glob("*.parquet")):
        time.sleep(0.2)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)  # wherever it is: training, measuring, or both
    process.wait()
    store = Store(str(storage), "follow")
    before = store.measures()
    assert len(before), (tmp_path / "driver.log").read_text()[-3000:]

    lines = []
    counts = driver.resume("follow", storage=str(storage), measure=True, out=lines.append)
    assert counts == {"completed": 3}
    after = store.measures()
    before = before[before["status"] == "ok"]  # (an error row would be tried again, by design)
    kept = after.merge(before, on=KEY, suffixes=("", "_before"))
    assert len(kept) == len(before)  # every row stored before the kill is still there ...
    assert (kept["seconds"] == kept["seconds_before"]).all()  # ... and was not computed again
    per_model = after.groupby(["trial_id", "model_id"])["family"].nunique()
    assert len(per_model) == 3 and per_model.min() == after["family"].nunique()  # every model, every family
    assert after.groupby(KEY).size().max() == 1

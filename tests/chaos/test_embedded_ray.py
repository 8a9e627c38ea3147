"""A driver that started its own embedded Ray and is SIGKILLed: its watchdog (sweep/reaper.py)
ends that Ray's processes, which would otherwise outlive it (parent 1), within seconds; the
next genzoo start that starts an embedded Ray ends those of any record left behind."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from chaos import harness
from sweep import cluster
from sweep.store import Store


@pytest.fixture
def ray_temp_dir():
    # Short: Ray's socket paths live under it and must stay under 108 characters.
    path = tempfile.mkdtemp(prefix="gzr", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _ours(temp_dir):
    """Processes tied to the test's Ray temp dir by their command line or open files."""
    return [p for p in harness.processes() if p["pid"] != os.getpid() and cluster.mentions(int(p["pid"]), temp_dir)]


def _start_and_kill(tmp_path, ray_temp_dir, epochs):
    """``genzoo sweep run`` on an embedded Ray, SIGKILLed (the driver alone, as the OOM killer
    would) once its first epoch is in the store; returns the env, the storage and the log."""
    config = harness.write_config(tmp_path, "embedded", epochs=epochs, widths=(8,))
    storage = str(tmp_path / "store")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "GENZOO_RAY_TEMP_DIR": ray_temp_dir,
           "TMPDIR": str(tmp_path), "PYTHONPATH": str(harness.REPO)}
    log = open(tmp_path / "genzoo.log", "ab")
    driver = subprocess.Popen([sys.executable, "-m", "sweep.cli", "sweep", "run", str(config), "--storage", storage],
                              env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=harness.REPO)
    store = None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and driver.poll() is None:
        if (tmp_path / "store" / "embedded" / "epochs").is_dir():
            store = store or Store(storage, "embedded")
            if len(store.epochs()) >= 1:
                break
        time.sleep(0.5)
    assert driver.poll() is None, (tmp_path / "genzoo.log").read_text()[-3000:]
    assert _ours(ray_temp_dir), "the embedded Ray should be running"
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    return env, storage, log


def _gone_within(ray_temp_dir, seconds):
    deadline = time.monotonic() + seconds
    while _ours(ray_temp_dir) and time.monotonic() < deadline:
        time.sleep(0.5)
    return _ours(ray_temp_dir)


def test_thirty_seconds_after_a_sigkill_of_the_driver_no_process_of_its_embedded_ray_is_alive(tmp_path,
                                                                                             ray_temp_dir):
    try:
        _start_and_kill(tmp_path, ray_temp_dir, epochs=200)  # still training when killed
        left = _gone_within(ray_temp_dir, 30)
        assert not left, left
        records = tmp_path / f"genzoo-{os.getuid()}" / "embedded-ray"
        deadline = time.monotonic() + 30
        while list(records.glob("*.json")) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not list(records.glob("*.json")), "the watchdog removes its record once done"
    finally:
        for p in _ours(ray_temp_dir):  # never leave ours behind, whatever failed
            try:
                os.kill(int(p["pid"]), signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.mark.slow  # two embedded Ray starts: 83 s here under load; the test above is the always-on part
def test_a_sweep_whose_driver_was_killed_resumes_on_a_new_embedded_ray(tmp_path, ray_temp_dir):
    try:
        env, storage, log = _start_and_kill(tmp_path, ray_temp_dir, epochs=4)
        assert not _gone_within(ray_temp_dir, 30)
        resumed = subprocess.run([sys.executable, "-m", "sweep.cli", "sweep", "resume", "embedded", "--storage", storage],
                                 env=env, stdout=log, stderr=subprocess.STDOUT, cwd=harness.REPO, timeout=300)
        assert resumed.returncode == 0, (tmp_path / "genzoo.log").read_text()[-3000:]
        assert not _gone_within(ray_temp_dir, 30)
        epochs = Store(storage, "embedded").epochs()
        assert list(epochs["epoch"]) == [1, 2, 3, 4]
    finally:
        for p in _ours(ray_temp_dir):
            try:
                os.kill(int(p["pid"]), signal.SIGKILL)
            except ProcessLookupError:
                pass


def _record(tmp_path, owner, session, processes=None):
    folder = tmp_path / f"genzoo-{os.getuid()}" / "embedded-ray"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{owner.pid if hasattr(owner, 'pid') else owner}.json").write_text(json.dumps({
        "owner": owner.pid, "owner_start": cluster._start_time(owner.pid), "session": session,
        "processes": processes or {}}))
    return folder


def test_reap_ends_the_processes_of_a_dead_drivers_session_and_spares_a_live_ones(tmp_path, monkeypatch):
    """No Ray: stand-ins for an agent (a process holding a file of the session open) and for
    its drivers (one exited, one still running)."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    sessions = {}
    for name in ("dead", "live"):
        session = f"session_2026-01-01_00-00-00_000000_{name}"
        log = tmp_path / session / "agent.out"
        log.parent.mkdir()
        log.touch()
        sessions[name] = subprocess.Popen(["bash", "-c", f"exec 3>>{log}; exec sleep 300"])
    dead_driver = subprocess.Popen(["true"])
    live_driver = subprocess.Popen(["sleep", "300"])
    try:
        time.sleep(0.5)
        dead_start = cluster._start_time(dead_driver.pid)
        dead_driver.wait()
        folder = _record(tmp_path, live_driver, "session_2026-01-01_00-00-00_000000_live")
        (folder / "dead.json").write_text(json.dumps({
            "owner": dead_driver.pid, "owner_start": dead_start, "session": "session_2026-01-01_00-00-00_000000_dead",
            "processes": {}}))
        killed = cluster.reap_orphaned_rays()
        assert killed == [sessions["dead"].pid]
        assert sessions["dead"].wait(timeout=10) == -signal.SIGKILL
        assert sessions["live"].poll() is None
        assert sorted(p.name for p in folder.iterdir()) == [f"{live_driver.pid}.json"]
    finally:
        for proc in (*sessions.values(), live_driver):
            proc.kill()
            proc.wait()

"""Chaos harness: a reference sweep and measures job, then the same config again while the
driver (``genzoo sweep run`` / ``resume`` / ``measure`` as subprocesses connected to a Ray
cluster with ``--address``) is SIGKILLed at seeded random moments and Ray workers running a
trial or a measure task are killed; each kill is followed by a resume until the store is
complete. :func:`compare` then checks that both stores hold the same trials, the same epoch
rows (none missing or duplicated), bit-identical metrics and weights, every checkpoint and
the same measures, and :func:`survivors` that no process of a killed driver outlives it.

Used by tests/chaos/test_chaos.py (a small always-on run and the slow full one).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import pandas as pd
import torch
import yaml

from sweep.store import Store

REPO = Path(__file__).resolve().parents[2]
# What a run records about when and where, not what: left out of the comparison.
TIMING = {"seconds", "images_per_second", "finished_at", "started_at", "host", "device", "error"}
MEASURES = "norms,training"
# A sweep driver is killed at most this many seconds after its launch committed a new epoch row
# (a tiny trial's epoch takes a fraction of a second: later, a launch could finish the sweep).
KILL_AFTER_PROGRESS = 0.3


def tiny_config(experiment: str, *, epochs: int = 3, widths=(8, 12), seeds=(0,), pack: int = 1) -> dict:
    return {
        "experiment": experiment, "dataset": "digits", "model": "nin",
        "train": {"epochs": epochs, "lr": 0.05, "train_size": 128, "batch_size": 32, "depth": 2, "dropout": 0.2},
        "grid": {"width": list(widths)}, "seeds": list(seeds), "checkpoint_epochs": [1],
        "resources": {"cpus": 1, "pack": pack}, "max_failures": 3,
    }


@dataclass
class ChaosLog:
    driver_kills: int = 0
    worker_kills: int = 0
    measure_driver_kills: int = 0
    measure_task_kills: int = 0
    launches: int = 0
    killed_pgids: List[int] = field(default_factory=list)
    events: List[str] = field(default_factory=list)
    seconds: float = 0.0


def _env() -> Dict[str, str]:
    return {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(REPO)}


def genzoo(args: List[str], log: Path) -> subprocess.Popen:
    """``genzoo ARGS`` as a subprocess in its own session (so its process group is its own)."""
    handle = open(log, "ab")
    return subprocess.Popen([sys.executable, "-m", "sweep.cli", *args], env=_env(), cwd=REPO, stdout=handle,
                            stderr=subprocess.STDOUT, start_new_session=True)


def run_to_end(args: List[str], log: Path, timeout: float = 600) -> int:
    proc = genzoo(args, log)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise


def scratch_left(temp_dir: Path, trial_ids) -> List[Path]:
    """The scratch folders of the given trials left in a $TMPDIR (sweep/scratch.py)."""
    return [p for trial_id in trial_ids for p in temp_dir.glob(f"genzoo-{trial_id}-*")]


def kill_group(proc: subprocess.Popen, chaos: ChaosLog) -> None:
    chaos.killed_pgids.append(proc.pid)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def processes() -> List[Dict[str, object]]:
    """Every process: pid, ppid, pgid, command line."""
    out = subprocess.run(["ps", "-eo", "pid=,ppid=,pgid=,args="], capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        parts = line.split(None, 3)
        if len(parts) >= 3:
            rows.append({"pid": int(parts[0]), "ppid": int(parts[1]), "pgid": int(parts[2]),
                         "args": parts[3] if len(parts) > 3 else ""})
    return rows


def survivors(chaos: ChaosLog, temp_dir: Optional[str] = None) -> List[Dict[str, object]]:
    """Processes left by the killed drivers: still in a killed driver's process group, or
    (for an embedded Ray) naming the harness's Ray temp dir."""
    me = os.getpid()
    return [p for p in processes() if p["pid"] != me and (
        p["pgid"] in chaos.killed_pgids or (temp_dir is not None and temp_dir in str(p["args"])))]


def ray_children(raylet_pid: int, title: str) -> List[int]:
    """The pids of the raylet's worker processes whose title starts with ``title``
    (``ray::ImplicitFunc`` for a Tune trial, ``ray::compute_model`` for a measure task)."""
    return [int(p["pid"]) for p in processes() if p["ppid"] == raylet_pid and str(p["args"]).startswith(title)]


def local_raylet_pid() -> int:
    """The raylet of the Ray this process started (the test session's)."""
    import ray

    node = ray._private.worker._global_node
    return node.all_processes[ray._private.ray_constants.PROCESS_TYPE_RAYLET][0].process.pid


def _wait(proc: subprocess.Popen, seconds: float) -> bool:
    """Whether ``proc`` ended within ``seconds``."""
    try:
        proc.wait(timeout=seconds)
        return True
    except subprocess.TimeoutExpired:
        return False


def chaotic(first: List[str], again: List[str], log: Path, chaos: ChaosLog, rng: random.Random, *,
            driver_kills: int, window: Optional[tuple] = None, worker_kills: int = 0, raylet_pid: Optional[int] = None,
            worker_title: str = "ray::ImplicitFunc", progress: Optional[Callable[[], int]] = None,
            measure: bool = False, deadline: float = 900, started: Callable[[], bool] = lambda: True) -> int:
    """Run ``first`` then ``again`` until one exits by itself, SIGKILLing the driver
    ``driver_kills`` times and then killing ``worker_kills`` Ray workers titled
    ``worker_title`` (children of ``raylet_pid``) once ``progress()`` has moved. Each driver
    kill lands a seeded random moment (up to ``KILL_AFTER_PROGRESS`` seconds) after that launch
    has committed something new (``progress()`` moved), or, without ``progress``, at a moment
    drawn from ``window`` (seconds after its start): on a machine of any speed the kills land
    while there is work left, not after a fast run has ended. A sweep whose store is not
    ``started()`` (a kill before its first write) is launched with ``first`` again, as
    `sweep resume` then tells its user. Returns the exit code of the launch that finished."""
    end = time.monotonic() + deadline
    kills = 0
    while True:
        args = first if chaos.launches == 0 or (measure and kills == 0 and chaos.measure_driver_kills == 0) else again
        if not measure and not started():
            # Killed before its first write (sweep.yaml): `sweep resume` says to run it again.
            args = first
        proc = genzoo(args, log)
        chaos.launches += 1
        if kills < driver_kills:
            launched = time.monotonic()
            if progress is not None:
                at_launch = progress()
                while proc.poll() is None and progress() <= at_launch and time.monotonic() < end:
                    time.sleep(0.1)
                delay = rng.uniform(0.0, KILL_AFTER_PROGRESS)
            else:
                assert window is not None, "driver kills without progress() need a window"
                delay = rng.uniform(*window)
            if _wait(proc, delay):
                chaos.events.append(f"driver finished before its kill at {time.monotonic() - launched:.1f} s")
                return proc.returncode
            moment = time.monotonic() - launched
            kill_group(proc, chaos)
            kills += 1
            if measure:
                chaos.measure_driver_kills += 1
            else:
                chaos.driver_kills += 1
            chaos.events.append(f"{'measure' if measure else 'sweep'} driver killed {moment:.1f} s after start")
            continue
        done = 0
        while done < worker_kills and raylet_pid is not None and proc.poll() is None:
            start = progress() if progress else 0
            while proc.poll() is None and time.monotonic() < end:
                pids = ray_children(raylet_pid, worker_title)
                if pids and (progress is None or progress() > start):
                    time.sleep(rng.uniform(0.0, 1.0))
                    try:
                        os.kill(rng.choice(pids), signal.SIGKILL)
                    except ProcessLookupError:
                        continue
                    done += 1
                    if measure:
                        chaos.measure_task_kills += 1
                    else:
                        chaos.worker_kills += 1
                    chaos.events.append(f"killed a {worker_title} worker")
                    break
                time.sleep(0.2)
        remaining = max(1.0, end - time.monotonic())
        proc.wait(timeout=remaining)
        return proc.returncode


def snapshot(storage: str, experiment: str) -> dict:
    """What a store holds, without its timings."""
    store = Store(storage, experiment)
    trials = store.trials()
    epochs = store.epochs()
    measures = store.measures()
    weights = {}
    for trial_id in trials["trial_id"]:
        for name in store.list("checkpoints", trial_id):
            weights[(trial_id, name)] = torch.load(store.local_path("checkpoints", trial_id, name), weights_only=True)
    return {
        "trials": trials.drop(columns=[c for c in trials.columns if c in TIMING]).sort_values("trial_id")
        .reset_index(drop=True),
        "epochs": epochs.drop(columns=[c for c in epochs.columns if c in TIMING]).sort_values(["trial_id", "epoch"])
        .reset_index(drop=True),
        "epoch_keys": epochs[["trial_id", "epoch"]],
        "measures": measures.drop(columns=[c for c in measures.columns if c in TIMING])
        .sort_values(["trial_id", "model_id", "family", "measure"]).reset_index(drop=True),
        "measure_keys": measures[["trial_id", "model_id", "family", "measure"]],
        "weights": weights,
    }


def compare(reference: dict, chaos: dict) -> None:
    """Assert that the chaotic store equals the reference (see the module docstring)."""
    assert not chaos["epoch_keys"].duplicated().any(), "duplicated epoch rows"
    assert not chaos["measure_keys"].duplicated().any(), "duplicated measure rows"
    assert set(chaos["trials"]["status"]) == {"completed"}, chaos["trials"][["trial_id", "status"]]
    pd.testing.assert_frame_equal(chaos["trials"], reference["trials"])
    pd.testing.assert_frame_equal(chaos["epochs"], reference["epochs"])
    pd.testing.assert_frame_equal(chaos["measures"], reference["measures"])
    assert (chaos["measures"]["status"] == "ok").all()
    assert sorted(chaos["weights"]) == sorted(reference["weights"]), "checkpoint files differ"
    for key, state in reference["weights"].items():
        other = chaos["weights"][key]
        if isinstance(state, dict):
            assert sorted(state) == sorted(other), key
            for name, tensor in state.items():
                if torch.is_tensor(tensor):
                    assert torch.equal(tensor, other[name]), (key, name)


def write_config(folder: Path, experiment: str, **kwargs) -> Path:
    path = folder / f"{experiment}.yaml"
    path.write_text(yaml.safe_dump(tiny_config(experiment, **kwargs)))
    return path


def reference_run(config: Path, storage: str, experiment: str, address: str, log: Path) -> float:
    started = time.monotonic()
    assert run_to_end(["sweep", "run", str(config), "--storage", storage, "--address", address], log) == 0, \
        log.read_text()[-3000:]
    assert run_to_end(["measure", experiment, "--measures", MEASURES, "--storage", storage,
                       "--address", address], log) == 0, log.read_text()[-3000:]
    return time.monotonic() - started


def chaos_run(config: Path, storage: str, experiment: str, address: str, log: Path, *, seed: int,
              driver_kills: int, worker_kills: int = 0, measure_kills: int = 0, measure_task_kills: int = 0,
              raylet_pid: Optional[int] = None, measure_window=(3.0, 20.0)) -> ChaosLog:
    rng = random.Random(seed)
    chaos = ChaosLog()
    started = time.monotonic()
    store = Store(storage, experiment)
    base = ["--storage", storage, "--address", address]
    code = chaotic(["sweep", "run", str(config), *base], ["sweep", "resume", experiment, *base], log, chaos, rng,
                   driver_kills=driver_kills, worker_kills=worker_kills, raylet_pid=raylet_pid,
                   progress=lambda: len(store.epochs()), started=lambda: store.exists("sweep.yaml"))
    assert code == 0, log.read_text()[-3000:]
    measure = ["measure", experiment, "--measures", MEASURES, *base]
    code = chaotic(measure, measure, log, chaos, rng, driver_kills=measure_kills, window=measure_window,
                   worker_kills=measure_task_kills, raylet_pid=raylet_pid, worker_title="ray::compute_model",
                   measure=True)
    if code != 0:  # a measure task killed past its retries leaves error rows: run again
        code = run_to_end(measure, log)
    assert code == 0, log.read_text()[-3000:]
    chaos.seconds = time.monotonic() - started
    return chaos

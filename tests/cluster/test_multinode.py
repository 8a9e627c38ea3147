"""A real two-node Ray cluster on this machine, driven by `genzoo sweep run --address`.

The nodes are addressed as 127.0.0.1; Ray itself swaps that for the machine's own address, so
the traffic never leaves the machine either way.

Each node is a `ray start --block` process owned by the test, in its own process group and
with its own `--temp-dir`, so that:

- `ray.init()` elsewhere (the session fixture of tests/conftest.py, other people's local Ray)
  never finds this cluster: `ray start` records its address in `<temp-dir>/ray_current_cluster`,
  not in /tmp/ray;
- the cluster is stopped by signalling those two process groups only. `ray stop` is never
  called: it kills every Ray process of the machine, the session fixture's included.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Dict, List

import pandas as pd
import pytest
import yaml

from process_groups import stop_group
from sweep.store import Store

RAY = str(Path(sys.executable).with_name("ray"))
GENZOO = [str(Path(sys.executable).with_name("genzoo"))]  # the installed console script
LOOPBACK = "127.0.0.1"
OBJECT_STORE_BYTES = 100 * 1024 * 1024  # Ray's minimum is 75 MiB; the default (30% of RAM) is wasteful here
START_TIMEOUT_S = 60
SWEEP_TIMEOUT_S = 240
STOP_TIMEOUT_S = 20

TINY_SWEEP = {
    "experiment": "twonode",
    "dataset": "digits",
    "model": "nin",
    "train": {"width": 8, "depth": 2, "train_size": 64, "epochs": 2, "batch_size": 32, "lr": 0.05},
    "seeds": [0, 1],  # the two trials
    "resources": {"cpus": 1},
    "max_failures": 0,
}


def _free_ports(count: int) -> List[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((LOOPBACK, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _env() -> Dict[str, str]:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)  # the command line names the cluster
    return env


def _start_node(args: List[str], log: Path, stack: ExitStack) -> subprocess.Popen:
    handle = open(log, "wb")
    stack.callback(handle.close)
    # No drain on SIGTERM: nothing is running by then, and draining waits for its timeout.
    env = {**_env(), "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
    proc = subprocess.Popen(
        [RAY, "start", "--block", *args], env=env, stdout=handle, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    stack.callback(_stop_node, proc)
    return proc


def _stop_node(proc: subprocess.Popen) -> None:
    """SIGTERM: `ray start --block` shuts its raylet, GCS and agents down, and the workers
    follow their raylet. Then SIGKILL whatever is left in the node's process group."""
    stop_group(proc, STOP_TIMEOUT_S)


def _wait_for_line(proc: subprocess.Popen, log: Path, text: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            pytest.fail(f"ray start exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)
    pytest.fail(f"ray start did not print {text!r} within {START_TIMEOUT_S} s")


ALIVE_NODES = """
import json, sys, time, ray
ray.init(address=sys.argv[1], log_to_driver=False)
deadline = time.monotonic() + float(sys.argv[2])
while True:
    alive = [n for n in ray.nodes() if n["Alive"]]
    if len(alive) >= 2 or time.monotonic() > deadline:
        break
    time.sleep(0.2)
print(json.dumps([{"id": n["NodeID"], "cpus": n["Resources"].get("CPU", 0)} for n in alive]))
"""


def _trial_nodes(tune_dir: Path, temp_dir: Path) -> Dict[str, str]:
    """Trial process id -> id of the node it ran on. Tune records each trial's pid in its
    result.json; the log of the Ray worker with that pid names its node."""
    nodes = {}
    for result in tune_dir.glob("run-*/*/result.json"):
        for line in result.read_text().splitlines():
            pid = json.loads(line)["pid"]
            (log,) = (temp_dir / "session_latest" / "logs").glob(f"python-core-worker-*_{pid}.log")
            match = re.search(r"node_id=([0-9a-f]+)", log.read_text(errors="replace"))
            assert match, f"no node_id in {log.name}: Ray's worker log format changed"
            nodes[str(pid)] = match[1]
    return nodes


@pytest.mark.slow  # 15 to 50 s: the full suite stays under 10 minutes on 2 idle cores
def test_a_sweep_runs_on_a_two_node_cluster_and_stores_every_trial(tmp_path):
    # Short socket paths: Ray's Unix sockets live under --temp-dir (108-byte limit).
    temp_dir = Path(tempfile.mkdtemp(prefix="gz-mn-", dir="/tmp"))
    gcs_port, *agent_ports = _free_ports(1 + 4)
    address = f"{LOOPBACK}:{gcs_port}"
    common = [f"--temp-dir={temp_dir}", "--num-cpus=1",
              f"--object-store-memory={OBJECT_STORE_BYTES}", "--disable-usage-stats"]
    sweep_file = tmp_path / "twonode.yaml"
    sweep_file.write_text(yaml.safe_dump(TINY_SWEEP))
    storage = tmp_path / "store"

    with ExitStack() as stack:
        stack.callback(shutil.rmtree, temp_dir, ignore_errors=True)  # runs after both nodes stopped
        head_log, worker_log = tmp_path / "head.log", tmp_path / "worker.log"
        head = _start_node(
            ["--head", f"--port={gcs_port}", "--include-dashboard=false",
             f"--dashboard-agent-listen-port={agent_ports[0]}", f"--metrics-export-port={agent_ports[1]}",
             *common],
            head_log, stack)
        _wait_for_line(head, head_log, "Ray runtime started")
        # Ray swaps 127.0.0.1 for this machine's own address; what matters is where it wrote it.
        assert (temp_dir / "ray_current_cluster").read_text().strip().endswith(f":{gcs_port}")
        worker = _start_node(
            [f"--address={address}", f"--dashboard-agent-listen-port={agent_ports[2]}",
             f"--metrics-export-port={agent_ports[3]}", *common],
            worker_log, stack)
        _wait_for_line(worker, worker_log, "Ray runtime started")

        nodes = subprocess.run([sys.executable, "-c", ALIVE_NODES, address, "30"], env=_env(),
                               capture_output=True, text=True, timeout=START_TIMEOUT_S)
        assert nodes.returncode == 0, nodes.stderr[-3000:]
        alive = json.loads(nodes.stdout.strip().splitlines()[-1])
        assert len(alive) == 2 and [n["cpus"] for n in alive] == [1.0, 1.0]

        sweep = subprocess.run(
            [*GENZOO, "sweep", "run", str(sweep_file), "--storage", str(storage), "--address", address],
            env=_env(), capture_output=True, text=True, timeout=SWEEP_TIMEOUT_S,
        )
        assert sweep.returncode == 0, (sweep.stdout + sweep.stderr)[-3000:]
        assert head.poll() is None and worker.poll() is None  # the cluster outlived its driver
        # Each node has one CPU and each trial takes one, so the two trials, started together,
        # ran one on each node.
        used = _trial_nodes(storage / "twonode" / "_tune", temp_dir)
        assert len(used) == 2 and set(used.values()) == {n["id"] for n in alive}

    store = Store(str(storage), "twonode")
    trials = store.trials()
    assert len(trials) == 2 and set(trials["status"]) == {"completed"}
    assert sorted(trials["seed"]) == [0, 1]
    epochs = pd.read_parquet(storage / "twonode" / "epochs")
    assert sorted(epochs.groupby("trial_id")["epoch"].apply(list).tolist()) == [[1, 2], [1, 2]]
    assert set(epochs["trial_id"]) == set(trials["trial_id"])
    for trial_id in trials["trial_id"]:
        assert store.list("checkpoints", trial_id) == ["final.pt", "init.pt"]

"""A worker node lost mid-sweep: on a loopback cluster (head + 2 workers, one CPU each, `ray
start` as in test_multinode.py), one worker node is SIGKILLed while trials train; Tune
reschedules its trials on the remaining nodes, they continue from the store's state.pt, and
the sweep completes with the epochs and weights of an undisturbed training."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from cluster.test_multinode import (ALIVE_NODES, GENZOO, LOOPBACK, OBJECT_STORE_BYTES, START_TIMEOUT_S, _env,
                                    _free_ports, _start_node, _wait_for_line)
from sweep import config as sweep_config
from sweep.store import Store
from trainers.config import TrainConfig
from trainers.train import train

SWEEP = {
    "experiment": "nodeloss", "dataset": "digits", "model": "nin",
    "train": {"width": 8, "depth": 2, "train_size": 128, "epochs": 6, "batch_size": 32, "lr": 0.05},
    "seeds": [0, 1, 2], "resources": {"cpus": 1}, "max_failures": 3,
}
TIMING = ["seconds", "images_per_second", "host", "device", "finished_at"]


@pytest.mark.slow
def test_a_lost_worker_node_is_rescheduled_and_the_sweep_completes_identically(tmp_path):
    temp_dir = Path(tempfile.mkdtemp(prefix="gz-nl-", dir="/tmp"))
    gcs_port, *ports = _free_ports(1 + 6)
    address = f"{LOOPBACK}:{gcs_port}"
    common = [f"--temp-dir={temp_dir}", "--num-cpus=1", f"--object-store-memory={OBJECT_STORE_BYTES}",
              "--disable-usage-stats"]
    sweep_file = tmp_path / "nodeloss.yaml"
    sweep_file.write_text(yaml.safe_dump(SWEEP))
    storage = tmp_path / "store"
    store = Store(str(storage), "nodeloss")

    with ExitStack() as stack:
        stack.callback(shutil.rmtree, temp_dir, ignore_errors=True)
        head = _start_node(["--head", f"--port={gcs_port}", "--include-dashboard=false",
                            f"--dashboard-agent-listen-port={ports[0]}", f"--metrics-export-port={ports[1]}", *common],
                           tmp_path / "head.log", stack)
        _wait_for_line(head, tmp_path / "head.log", "Ray runtime started")
        workers = []
        for index in range(2):
            log = tmp_path / f"worker{index}.log"
            workers.append(_start_node([f"--address={address}", f"--dashboard-agent-listen-port={ports[2 + 2 * index]}",
                                        f"--metrics-export-port={ports[3 + 2 * index]}", *common], log, stack))
            _wait_for_line(workers[-1], log, "Ray runtime started")
        nodes = subprocess.run([sys.executable, "-c", ALIVE_NODES.replace(">= 2", ">= 3"), address, "30"], env=_env(),
                               capture_output=True, text=True, timeout=START_TIMEOUT_S)
        assert nodes.returncode == 0 and len(json.loads(nodes.stdout.strip().splitlines()[-1])) == 3, nodes.stderr

        driver = subprocess.Popen([*GENZOO, "sweep", "run", str(sweep_file), "--storage", str(storage),
                                   "--address", address], env=_env(), stdout=open(tmp_path / "driver.log", "wb"),
                                  stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and driver.poll() is None:
            epochs = store.epochs()
            if len(epochs) >= 3 and epochs["trial_id"].nunique() >= 2:
                break
            time.sleep(0.3)
        assert driver.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
        lost_at = len(store.epochs())
        os.killpg(workers[0].pid, signal.SIGKILL)  # the node dies: its raylet, agents and trial workers
        workers[0].wait()
        code = driver.wait(timeout=600)
        assert code == 0, (tmp_path / "driver.log").read_text()[-3000:]
        assert head.poll() is None and workers[1].poll() is None

    assert lost_at < 18, "the sweep finished before the node was lost"
    trials = store.trials()
    assert len(trials) == 3 and set(trials["status"]) == {"completed"}
    epochs = store.epochs()
    assert len(epochs) == 18 and not epochs.duplicated(["trial_id", "epoch"]).any()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the trials' workers
    try:
        for index, config in enumerate(sweep_config.parse(SWEEP).trials()):
            config = TrainConfig.from_dict(config.to_dict())
            reference = train(config, run_dir=tmp_path / f"reference{index}", device="cpu")
            expected = pd.DataFrame(reference.records).drop(columns=[c for c in TIMING if c in reference.records[0]])
            got = store.epochs(config.trial_id)[expected.columns].reset_index(drop=True)
            pd.testing.assert_frame_equal(got, expected)
            final = torch.load(store.local_path("checkpoints", config.trial_id, "final.pt"), weights_only=True)
            for name, tensor in reference.model.state_dict().items():
                assert torch.equal(final[name], tensor), name
    finally:
        torch.set_num_threads(threads)
    print(f"\nnode lost after {lost_at} of 18 epochs; the sweep completed identically")

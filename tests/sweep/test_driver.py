import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch
import yaml

from sweep import config as sweep_config
from sweep import cluster, driver, launches, provenance
from sweep.cli import main
from sweep.store import Store
from trainers.config import TrainConfig
from trainers.train import train

TINY = {
    "dataset": "digits", "model": "nin",
    "train": {"epochs": 3, "lr": 0.05, "train_size": 128, "batch_size": 32, "depth": 2, "dropout": 0.2},
    "grid": {"width": [8, 12]}, "seeds": [0], "checkpoint_epochs": [1],
    "resources": {"cpus": 1}, "max_failures": 2,
}
TIMING = ("seconds", "images_per_second")


def _config(tmp_path, name, **changes):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**TINY, "experiment": name, **changes}))
    return path


def test_sweep_writes_the_store_layout_and_a_rerun_trains_nothing(ray_address, tmp_path, capsys):
    path = _config(tmp_path, "e2e")
    storage = tmp_path / "store"
    assert main(["sweep", "run", str(path), "--storage", str(storage)]) == 0
    out = capsys.readouterr().out
    assert "[e2e] trials 2/2 done" in out and "+---" not in out  # our progress line, not Tune's table
    assert "slot utilization" in out

    root = storage / "e2e"
    trials = pd.read_parquet(root / "trials.parquet")
    epochs = pd.read_parquet(root / "epochs")
    assert len(trials) == 2 and set(trials["status"]) == {"completed"}
    assert {"width", "dropout", "seed", "train_acc", "test_acc"} <= set(trials.columns)
    assert sorted(epochs.groupby("trial_id")["epoch"].apply(list).tolist()) == [[1, 2, 3], [1, 2, 3]]
    for trial_id in trials["trial_id"]:
        names = sorted(os.listdir(root / "checkpoints" / trial_id))
        assert names == ["epoch_1.pt", "final.pt", "init.pt"]
        torch.load(root / "checkpoints" / trial_id / "final.pt", weights_only=True)
    assert (root / "sweep.yaml").exists() and "versions" in (root / "sweep.yaml").read_text()

    before = {p: p.stat().st_mtime_ns for p in (root / "epochs").iterdir()}
    # A driver killed between a trial's last commit and the deletion of its state.pt leaves
    # the trial complete with the file; the next launch, with nothing to train, removes it.
    stray = root / "checkpoints" / trials["trial_id"].iloc[0] / "state.pt"
    stray.write_bytes((stray.parent / "final.pt").read_bytes())
    assert main(["sweep", "run", str(path), "--storage", str(storage)]) == 0
    assert "nothing to train" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in (root / "epochs").iterdir()} == before
    assert not stray.exists()

    assert main(["sweep", "status", "e2e", "--storage", str(storage)]) == 0
    status = capsys.readouterr().out
    assert "completed 2" in status and "epochs: 6/6 done" in status
    assert "last launch: slot utilization" in status and "x 2 slots" in status


def test_a_trial_that_raises_is_retried_from_its_checkpoint_with_identical_results(ray_address, tmp_path):
    path = _config(tmp_path, "faulty", grid={"width": [8]}, fault_injection={"epoch": 2})
    storage = tmp_path / "store"
    counts = driver.run(sweep_config.load(str(path)), storage=str(storage))
    assert counts == {"completed": 1}

    store = Store(str(storage), "faulty")
    (trial_id,) = store.trials()["trial_id"]
    assert store.exists("_faults", trial_id)  # the fault really fired
    # The retry resumed from the store's state.pt, the only copy: Tune holds no checkpoint.
    assert not list((storage / "faulty" / "_tune").rglob("state.pt"))
    assert not list((storage / "faulty" / "_tune").rglob("checkpoint_*"))
    swept = store.epochs(trial_id)

    config = TrainConfig.from_dict(sweep_config.load(str(path)).trials()[0].to_dict())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the trial's worker
    try:
        reference = train(config, run_dir=tmp_path / "reference", device="cpu")
    finally:
        torch.set_num_threads(threads)
    expected = pd.DataFrame(reference.records).drop(columns=list(TIMING))
    got = swept.drop(columns=["trial_id", *TIMING])[expected.columns]
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected)
    final = torch.load(store.local_path("checkpoints", trial_id, "final.pt"), weights_only=True)
    for name, tensor in reference.model.state_dict().items():
        assert torch.equal(final[name], tensor), name


def test_killed_driver_is_resumed_without_retraining_or_duplicate_rows(ray_address, tmp_path):
    path = _config(tmp_path, "killed", train={**TINY["train"], "epochs": 6}, grid={"width": [8, 12, 16]})
    storage = tmp_path / "store"
    store = Store(str(storage), "killed")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    driver_proc = subprocess.Popen(
        [sys.executable, "-m", "sweep.cli", "sweep", "run", str(path), "--storage", str(storage),
         "--address", ray_address],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            epochs = store.epochs()
            if len(epochs) >= 3 and epochs.groupby("trial_id")["epoch"].max().max() >= 2:
                break
            time.sleep(0.5)
        else:
            pytest.fail("the sweep made no progress before the kill")
    finally:
        os.killpg(driver_proc.pid, signal.SIGKILL)
        driver_proc.wait()
    before = store.epochs()
    assert len(before) < 3 * 6, "the sweep finished before it could be killed"

    assert main(["sweep", "resume", "killed", "--storage", str(storage)]) == 0
    after = store.epochs()
    assert len(after) == 3 * 6
    assert not after.duplicated(["trial_id", "epoch"]).any()
    assert set(store.trials()["status"]) == {"completed"}
    # Epochs finished before the kill keep their original timings: the trials continued from
    # their saved state instead of training again from scratch. Only a trial's last epoch
    # before the kill may be redone (killed between its state and its record).
    merged = before.merge(after, on=["trial_id", "epoch"], suffixes=("_before", "_after"))
    settled = merged[merged["epoch"] < merged["trial_id"].map(before.groupby("trial_id")["epoch"].max())]
    assert len(settled) > 0
    assert (settled["seconds_before"] == settled["seconds_after"]).all()


@pytest.mark.parametrize("available, cpus, gpus, field", [
    ({"CPU": 8.0}, 1, 0.5, "resources.gpus: 0.5 GPU per trial requested but the Ray cluster has no GPU"),
    ({"CPU": 8.0, "GPU": 0.0}, 1, 1, "resources.gpus: 1 GPU per trial requested but the Ray cluster has no GPU"),
    ({"CPU": 2.0, "GPU": 1.0}, 4, 0.5, "resources.cpus: 4 CPUs per trial but the Ray cluster has 2 CPUs"),
])
def test_check_cluster_refuses_a_request_the_cluster_cannot_run_unless_it_autoscales(available, cpus, gpus, field):
    kwargs = dict(cpus=cpus, gpus=gpus, what="trial", gpu_field="resources.gpus", gpu_flag="--gpus-per-trial")
    with pytest.raises(sweep_config.SweepConfigError) as raised:
        cluster.check_cluster(available, **kwargs)
    message = str(raised.value)
    assert message.startswith(field) and "--autoscale" in message and "\n" not in message
    warning = cluster.check_cluster(available, autoscale=True, **kwargs)
    assert warning.startswith(field) and "waits until the autoscaler adds a node" in warning


def test_check_cluster_accepts_what_the_cluster_has_now():
    kwargs = dict(what="trial", gpu_field="resources.gpus", gpu_flag="--gpus-per-trial")
    assert cluster.check_cluster({"CPU": 2.0}, cpus=2, gpus=0, **kwargs) is None
    assert cluster.check_cluster({"CPU": 16.0, "GPU": 1.0}, cpus=2, gpus=0.25, **kwargs) is None
    assert cluster.check_cluster({"CPU": 16.0, "GPU": 1.0}, cpus=2, gpus=0.25, autoscale=True, **kwargs) is None


def test_sweep_asking_for_a_gpu_on_a_cluster_without_one_exits_2_and_writes_nothing(ray_address, tmp_path, capsys):
    # The session's local Ray has no GPU; the check runs before anything reaches the store.
    path = _config(tmp_path, "nogpu", resources={"cpus": 1, "gpus": 0.5})
    storage = tmp_path / "store"
    assert main(["sweep", "run", str(path), "--storage", str(storage)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("genzoo: error: resources.gpus: 0.5 GPU per trial requested but the Ray cluster has no GPU "
                   "(use --gpus-per-trial 0, or --autoscale if the cluster adds nodes on demand)")
    assert not (storage / "nogpu").exists()  # no empty experiment folder either


def test_slot_utilization_is_training_seconds_over_wall_times_slots():
    launch = launches.slot_utilization(30.0, 20.0, 2)
    assert launch["utilization"] == pytest.approx(0.75)
    assert "slot utilization 75%" in launches.utilization_text(launch)
    config = sweep_config.parse({"resources": {"cpus": 1, "gpus": 0.25}})
    assert driver._slots({"CPU": 8, "GPU": 1}, config, 10) == 4
    assert driver._slots({"CPU": 2}, sweep_config.parse({}), 10) == 2
    assert driver._slots({"CPU": 8}, sweep_config.parse({}), 3) == 3


def test_a_refused_launch_of_a_started_experiment_leaves_its_sweep_yaml_as_it_was(ray_address, tmp_path, capsys):
    path = _config(tmp_path, "nogpu", resources={"cpus": 1, "gpus": 0.5})
    storage = tmp_path / "store"
    store = Store(str(storage), "nogpu")
    store.write_text(driver._provenance(sweep_config.load(str(path)), provenance.now()), "sweep.yaml")
    before = (storage / "nogpu" / "sweep.yaml").read_bytes()
    assert main(["sweep", "run", str(path), "--storage", str(storage)]) == 2
    assert "no GPU" in capsys.readouterr().err
    assert (storage / "nogpu" / "sweep.yaml").read_bytes() == before
    assert sorted(p.name for p in (storage / "nogpu").iterdir()) == ["sweep.yaml"]

"""A sweep into a small tmpfs that fills up stops with one line naming the store; after space
is freed, `genzoo sweep resume` completes and every file of the store reads back."""

import os
import subprocess

import pandas as pd
import pytest
import torch
import yaml

from sweep.cli import main
from sweep.store import Store

CONFIG = {
    "experiment": "full", "dataset": "digits", "model": "nin",
    "train": {"epochs": 3, "lr": 0.05, "train_size": 128, "batch_size": 32, "depth": 2, "dropout": 0.2},
    "grid": {"width": [8]}, "seeds": [0], "checkpoint_epochs": [1], "resources": {"cpus": 1}, "max_failures": 1,
}
# A finished store of CONFIG takes about 190 KB (three 22 KB checkpoints, Tune's 50 KB, the
# tables); this much free space runs out during the first epochs.
FREE_BYTES = 110_000


@pytest.fixture
def small_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; this test runs as an ordinary user")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip() or mounted.returncode})")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk, leave):
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    filler = disk / "filler"
    with open(filler, "wb") as handle:
        handle.write(b"\0" * max(0, free - leave))
    return filler


def test_a_full_disk_stops_the_sweep_in_one_line_and_resume_completes_after_space_is_freed(
        ray_address, small_disk, tmp_path, capsys):
    path = tmp_path / "full.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    filler = _fill(small_disk, FREE_BYTES)
    code = main(["sweep", "run", str(path), "--storage", str(small_disk)])
    captured = capsys.readouterr()
    assert code != 0, captured.out
    store = Store(str(small_disk), "full")
    errors = [line for line in captured.err.splitlines() if line.strip()]
    print(f"exit {code}; stderr: {errors}")
    if code == 2:  # the driver's own write failed: one line naming the store
        assert len(errors) == 1 and str(small_disk) in errors[0] and "no space left" in errors[0], captured.err
        assert "Traceback" not in captured.err
    else:  # the trial's write failed: its error row names the store
        trials = store.trials()
        assert "no space left" in trials["error"].iloc[0] and str(small_disk) in trials["error"].iloc[0]
    assert len(store.epochs()) < 3

    filler.unlink()
    assert main(["sweep", "resume", "full", "--storage", str(small_disk)]) == 0
    epochs = store.epochs()
    assert list(epochs["epoch"]) == [1, 2, 3]
    assert set(store.trials()["status"]) == {"completed"}
    root = small_disk / "full"
    for parquet in root.rglob("*.parquet"):
        pd.read_parquet(parquet)  # no corrupt table
    checkpoints = sorted(p.name for p in (root / "checkpoints").rglob("*.pt"))
    assert checkpoints == ["epoch_1.pt", "final.pt", "init.pt"]
    for name in (root / "checkpoints").rglob("*.pt"):
        torch.load(name, weights_only=True)
    assert not [p for p in root.rglob(".*.tmp-*")], "a temporary file was left behind"

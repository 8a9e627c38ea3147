"""Scratch folders of trials (sweep/scratch.py): named after their owner process, removed when
the trial ends, and those of owners that no longer run removed by the next reap."""

import os
import subprocess
import tempfile

from sweep import scratch


def test_a_folder_of_a_dead_owner_is_reaped_and_live_ones_and_other_names_are_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    mine = scratch.make("nin-0123456789abcdef")
    assert mine.parent == tmp_path and mine.name.startswith(f"genzoo-nin-0123456789abcdef-{os.getpid()}.")
    owner = subprocess.Popen(["sleep", "60"])
    start = scratch.start_time(owner.pid)
    dead = tmp_path / f"genzoo-nin-0123456789abcdef-{owner.pid}.{start}-abc_123"
    (dead / "checkpoints").mkdir(parents=True)
    (dead / "state.pt").write_bytes(b"x")
    reused = tmp_path / f"genzoo-nin-fedcba9876543210-{os.getpid()}.1-xyz"  # our pid, another start: a dead owner
    reused.mkdir()
    others = [tmp_path / f"genzoo-{os.getuid()}", tmp_path / "genzoo-nin-0123456789abcdef-old_style", tmp_path / "other"]
    for folder in others:
        folder.mkdir()
    assert scratch.reap() == [reused]  # the owner still runs: only the folder of a reused pid goes
    assert dead.exists() and mine.exists()
    owner.kill()
    owner.wait()
    assert scratch.reap() == [dead]
    assert not dead.exists() and not reused.exists() and mine.exists()
    assert all(folder.exists() for folder in others)


def test_a_trial_removes_its_folder_when_it_ends(tmp_path, monkeypatch):
    from sweep import trial
    from sweep.store import Store
    from trainers.config import TrainConfig

    scratch_dir = tmp_path / "tmp"
    scratch_dir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch_dir))
    config = TrainConfig(dataset="digits", model="nin", width=8, depth=2, train_size=64, batch_size=32, epochs=1)
    trial.train_trial(config, Store(str(tmp_path / "store"), "exp"), device="cpu")
    assert list(scratch_dir.glob("genzoo-*")) == []

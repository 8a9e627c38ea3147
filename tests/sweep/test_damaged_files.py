"""Damaged files of an interrupted sweep, on a real local Ray: a ``state.pt``, an early checkpoint
and ``trials.parquet`` that do not load are each reported in one line naming the store file,
and `sweep resume` completes the sweep (the trial retrained from the last state that loads,
here from scratch), ending with the weights of an undisturbed run."""

import pytest
import torch
import yaml

from sweep import config as sweep_config
from sweep import driver, trial
from sweep.store import Store

SWEEP = {
    "experiment": "damaged", "dataset": "digits", "model": "nin",
    "train": {"epochs": 3, "lr": 0.05, "train_size": 64, "batch_size": 32, "depth": 2, "dropout": 0.2},
    "grid": {"width": [8, 12]}, "seeds": [0], "checkpoint_epochs": [1], "resources": {"cpus": 1},
}


def _run(tmp_path, name, document, **kwargs):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document))
    lines = []
    counts = driver.run(sweep_config.load(str(path)), storage=str(tmp_path / name), out=lines.append, **kwargs)
    return counts, lines


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The undisturbed trials, trained here as a Tune trial trains them (one thread)."""
    store = Store(str(tmp_path_factory.mktemp("reference")), "damaged")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for config in sweep_config.parse(SWEEP).trials():
            trial.train_trial(config, store, device="cpu")
    finally:
        torch.set_num_threads(threads)
    return store


def _weights(store, trial_id, name):
    return torch.load(store.local_path("checkpoints", trial_id, name), weights_only=True)


def test_damaged_state_early_checkpoint_and_trials_table_are_reported_and_the_sweep_completes(
        ray_address, reference, tmp_path):
    # Both trials fail after committing epoch 2 (no retry): each keeps a state.pt of epoch 2.
    counts, _ = _run(tmp_path, "store", {**SWEEP, "fault_injection": {"epoch": 2}, "max_failures": 0})
    assert counts == {"error": 2}
    store = Store(str(tmp_path / "store"), "damaged")
    first, second = sorted(store.trials()["trial_id"])
    root = tmp_path / "store" / "damaged"
    state = root / "checkpoints" / first / "state.pt"
    state.write_bytes(state.read_bytes()[:200])
    early = root / "checkpoints" / second / "epoch_1.pt"
    early.write_bytes(b"not a checkpoint")
    (root / "trials.parquet").write_bytes(b"PAR1 garbage")

    lines = []
    counts = driver.resume("damaged", storage=str(tmp_path / "store"), out=lines.append)
    assert counts == {"completed": 2}
    reports = [line for line in lines if "not a" in line]
    assert len(reports) == 3, lines
    for path in (state, early, root / "trials.parquet"):
        (line,) = [line for line in reports if str(path) in line]
        assert "\n" not in line
    # Retrained from scratch (the state is gone; a state past the lost early checkpoint cannot
    # write it again): every weight is the undisturbed run's.
    for trial_id in (first, second):
        for name in ("init.pt", "epoch_1.pt", "final.pt"):
            expected, got = _weights(reference, trial_id, name), _weights(store, trial_id, name)
            assert all(torch.equal(expected[k], got[k]) for k in expected), (trial_id, name)
        assert list(store.epochs(trial_id)["epoch"]) == [1, 2, 3]
    assert set(store.trials()["status"]) == {"completed"}

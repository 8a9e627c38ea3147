"""A sweep with ``resources.pack``: grid points trained as packs, each model in the store as if
trained alone (tests/trainers/test_packed.py checks the packed trainer itself)."""

import os

import pytest
import torch
import yaml

from sweep import config as sweep_config
from sweep import driver
from sweep.config import SweepConfigError, packs
from sweep.store import Store
from trainers.config import TrainConfig
from trainers.packed import train_packed

PACKED = {
    "experiment": "packed", "dataset": "digits", "model": "nin",
    "train": {"epochs": 3, "lr": 0.05, "train_size": 64, "batch_size": 32, "depth": 2, "width": 8},
    "grid": {"dropout": [0.0, 0.3], "weight_decay": [0.0, 5e-4]}, "seeds": [0], "checkpoint_epochs": [1],
    "resources": {"cpus": 1, "pack": 4}, "max_failures": 2,
}


def _write(tmp_path, document):
    path = tmp_path / f"{document['experiment']}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_a_packed_sweep_trains_one_tune_trial_per_pack_and_resumes_every_model_after_a_fault(
        ray_address, tmp_path, one_thread):
    path = _write(tmp_path, {**PACKED, "fault_injection": {"epoch": 2}})
    config = sweep_config.load(str(path))
    storage = tmp_path / "store"
    lines = []
    counts = driver.run(config, storage=str(storage), out=lines.append)
    assert counts == {"completed": 4}
    assert any("4 of 4 trials to train in 1 packs" in line for line in lines)

    store = Store(str(storage), "packed")
    trials = store.trials()
    first = config.trials()[0].trial_id
    assert store.exists("_faults", first)  # the pack raised once and Tune retried it
    # Tune ran one trial: the pack, named after its first model.
    assert [p.name for p in (storage / "packed" / "_tune" / "run-1").iterdir() if p.is_dir()] == [f"pack4-{first}"]

    # The same pack trained straight through, here: every model's records and weights match.
    configs = config.trials()
    straight = train_packed(configs, run_dirs=[tmp_path / f"straight{k}" for k in range(4)], device="cpu")
    for c, result in zip(configs, straight):
        epochs = store.epochs(c.trial_id)
        assert list(epochs["epoch"]) == [1, 2, 3]
        assert sorted(os.listdir(storage / "packed" / "checkpoints" / c.trial_id)) == ["epoch_1.pt", "final.pt", "init.pt"]
        final = torch.load(storage / "packed" / "checkpoints" / c.trial_id / "final.pt", weights_only=True)
        for name, tensor in result.model.state_dict().items():
            if tensor.is_floating_point():
                assert torch.allclose(final[name], tensor, rtol=1e-4, atol=1e-6), (c.trial_id, name)
        assert epochs["train_loss"].iloc[-1] == pytest.approx(result.records[-1]["train_loss"], rel=1e-4)
        assert list(store.models(c.trial_id)["model_id"]) == ["final"]
    assert set(trials["status"]) == {"completed"} and len(trials) == 4


def test_packs_group_grid_points_that_share_an_architecture_in_order():
    configs = [TrainConfig(width=w, seed=s, epochs=2) for w in (8, 12) for s in range(3)]
    grouped = packs(configs, 2)
    assert [[c.width for c in p] for p in grouped] == [[8, 8], [8], [12, 12], [12]]
    assert [c for p in grouped for c in p] == configs
    assert packs(configs, 1) == [[c] for c in configs]


@pytest.mark.parametrize("pack, message", [
    (0, r"^resources.pack: got 0, allowed: an integer >= 1"),
    ("4", r"^resources.pack: got '4', allowed: an integer >= 1"),
])
def test_a_bad_pack_is_a_one_line_error(tmp_path, pack, message):
    path = _write(tmp_path, {**PACKED, "resources": {"cpus": 1, "pack": pack}})
    with pytest.raises(SweepConfigError, match=message):
        sweep_config.load(str(path))


def test_a_mode_that_cannot_be_packed_is_refused_up_front(tmp_path):
    path = _write(tmp_path, {**PACKED, "train": {**PACKED["train"], "epochs": 4}, "mode": "prune_during_training",
                             "mode_settings": {"event_epochs": [2], "fractions": [0.5], "layers": ["blocks.0.conv1"]}})
    with pytest.raises(SweepConfigError, match=r"^resources.pack: mode 'prune_during_training' cannot be packed"):
        sweep_config.load(str(path))

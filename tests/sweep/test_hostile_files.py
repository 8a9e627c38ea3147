"""Corrupt and hostile files in the store (no Ray: the trials are trained with sweep.trial).

A truncated or garbage checkpoint, epochs, models, trials or measures file is an error of one
line naming the file, and the other trial's data stays readable; a checkpoint whose pickle
would run code is refused without running it (a resumable state so refused is reported in one
line and the trial retrained); a NaN-producing config ends as a diverged row.
"""

import os

import pytest
import torch
import yaml

from sweep import config as sweep_config
from sweep import reader, trial
from sweep.cli import main
from sweep.store import Store, StoreError
from sweep.trials_table import TrialsTable
from trainers import checkpoint
from trainers.checkpoint import CheckpointError
from trainers.config import TrainConfig

BASE = dict(dataset="digits", model="nin", width=8, depth=2, train_size=64, batch_size=32, epochs=2,
            lr=0.05, dropout=0.0)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """Two finished trials and a diverged one in a local store."""
    storage = tmp_path_factory.mktemp("hostile")
    store = Store(str(storage), "zoo")
    configs = [TrainConfig.from_dict({**BASE, "width": w}) for w in (8, 12)]
    configs.append(TrainConfig.from_dict({**BASE, "lr": 1e12, "seed": 1}))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for config in configs:
            trial.train_trial(config, store, device="cpu")
    finally:
        torch.set_num_threads(threads)
    TrialsTable(store, configs).write()
    document = sweep_config.parse({"experiment": "zoo", "train": {k: v for k, v in BASE.items() if k != "width"},
                                   "grid": {"width": [8, 12]}}).to_dict()
    store.write_text(yaml.safe_dump(document), "sweep.yaml")
    store.write_measures(configs[0].trial_id, [])
    return storage, store, [c.trial_id for c in configs]


def _one_line(message: str, *names: str) -> None:
    assert "\n" not in message.strip(), message
    for name in names:
        assert name in message, (name, message)


def test_a_nan_producing_config_ends_as_a_diverged_row(zoo):
    _, store, (_, _, diverged) = zoo
    rows = store.trials().set_index("trial_id")
    assert rows.loc[diverged, "status"] == "diverged"
    assert set(rows.drop(index=diverged)["status"]) == {"completed"}
    assert store.epochs(diverged)["status"].iloc[-1] == "diverged"


def _copy(zoo, tmp_path):
    """A private copy of the module's store, to damage."""
    import shutil

    storage, _, ids = zoo
    shutil.copytree(storage / "zoo", tmp_path / "zoo")
    return tmp_path, Store(str(tmp_path), "zoo"), ids


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_a_damaged_checkpoint_is_one_line_naming_it_and_the_other_model_still_loads(zoo, tmp_path, damage):
    storage, store, (bad, good, _) = _copy(zoo, tmp_path)
    path = storage / "zoo" / "checkpoints" / bad / "final.pt"
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": os.urandom(len(data)), "empty": b""}[damage])
    with pytest.raises(CheckpointError) as raised:
        reader.load_model(str(storage), "zoo", bad)
    _one_line(str(raised.value), f"checkpoints/{bad}/final.pt")
    reader.load_model(str(storage), "zoo", good)


@pytest.mark.parametrize("table", ["epochs", "models", "measures", "trials"])
@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_a_damaged_table_is_one_line_naming_it_and_the_other_trials_stay_readable(zoo, tmp_path, capsys, table, damage):
    storage, store, (bad, good, _) = _copy(zoo, tmp_path)
    parts = ("trials.parquet",) if table == "trials" else (table, f"{bad}.parquet")
    path = storage / "zoo" / os.path.join(*parts)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else os.urandom(len(data)))
    read = {"epochs": store.epochs, "models": store.models, "measures": store.measures, "trials": store.trials}[table]
    with pytest.raises(StoreError) as raised:
        read()
    _one_line(str(raised.value), "/".join(parts))
    if table in ("epochs", "models"):
        assert len(read(good)) > 0  # the other trial's file reads
    if table != "trials":
        assert len(store.trials()) == 3
    else:
        assert len(store.epochs(good)) == 2
    # The command line reports it in one line naming the file, or reads around it.
    code = main(["sweep", "status", "zoo", "--storage", str(storage)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code in (0, 2)
    if code == 2:
        assert len(err) == 1 and "/".join(parts) in err[0], err


class _Payload:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_whose_pickle_would_run_code_is_refused_and_the_code_never_runs(zoo, tmp_path):
    storage, store, (bad, good, _) = _copy(zoo, tmp_path)
    marker = tmp_path / "pwned"
    path = storage / "zoo" / "checkpoints" / bad / "final.pt"
    torch.save({"weight": _Payload(marker)}, path)
    with pytest.raises(CheckpointError) as raised:
        reader.load_model(str(storage), "zoo", bad)
    _one_line(str(raised.value), f"checkpoints/{bad}/final.pt", "refused")
    assert "weights_only=False" not in str(raised.value)  # not torch's advice to load it unsafely
    with pytest.raises(CheckpointError):
        checkpoint.load(path)
    assert not marker.exists()
    reader.load_model(str(storage), "zoo", good)
    torch.load(path, weights_only=False)  # the payload is real: an unsafe load runs it
    assert marker.exists()


def test_a_hostile_resume_state_is_refused_and_the_code_never_runs(zoo, tmp_path):
    storage, store, (bad, _, _) = _copy(zoo, tmp_path)
    marker = tmp_path / "pwned"
    config = TrainConfig.from_dict({**BASE, "width": 8})
    assert config.trial_id == bad
    for name in store.list("epochs"):
        store.delete("epochs", name)
    store.delete("models", f"{bad}.parquet")
    torch.save({"epoch": _Payload(marker)}, storage / "zoo" / "checkpoints" / bad / checkpoint.STATE)
    # Refused in one line naming the store's file, never run; the trial is trained from scratch.
    lines = []
    trial.train_trial(config, store, device="cpu", warn=lines.append)
    assert len(lines) == 1
    _one_line(lines[0], f"{storage / 'zoo'}/checkpoints/{bad}/state.pt", "refused", "from scratch")
    assert "weights_only=False" not in lines[0]
    assert not marker.exists()
    assert trial.is_complete(store, config) and list(store.epochs(bad)["epoch"]) == [1, 2]

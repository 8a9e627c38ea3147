"""Crash consistency of a pack's commits (``resources.pack``; no Ray: sweep.trial is Ray-free).

A pack commits each epoch as one unit (sweep/trial.py): the store is made to fail at every
write of a middle epoch, of the last epoch and of the finishing step in turn, before or after
the write lands, so at every point between the commits of two models of the pack; resuming as
the driver does (the pack's models not yet complete, trained as the same pack) must end with
exactly the files, records and weights of the uninterrupted packed run, bit for bit on CPU.
"""

import pandas as pd
import pytest
import torch

from sweep import driver, trial
from recording_store import Crash, RecordingStore
from sweep.store import Store
from trainers.config import TrainConfig

TIMING = ("seconds", "images_per_second", "finished_at", "host", "device")
# Two NiNs with dropout (each model's own dropout stream) and an early checkpoint.
PACK = [dict(dataset="digits", model="nin", width=8, depth=2, train_size=64, batch_size=32, epochs=3, lr=0.05,
             dropout=0.2, checkpoint_epochs=(1,), seed=seed) for seed in (0, 1)]
# Two MLPs trained to a target loss: the first reaches its target after epoch 2 and leaves the
# pack, the second runs to the cap (epoch 4) alone in the pack.
STOPPING = [dict(dataset="digits", model="lenet_300_100", width=32, train_size=200, lr=0.01, batch_size=32,
                 augment=False, epochs=4, checkpoint_epochs=(1,), stop_at_train_loss=target)
            for target in (2.0, 1e-6)]

pytestmark = pytest.mark.usefixtures("one_thread", "datasets_loaded_once")


@pytest.fixture(scope="module")
def datasets_loaded_once():
    """Each (dataset, size, noise, seed) loaded once for the module's hundred-odd runs (the
    digits take a quarter of a second to load and normalize; training never changes them)."""
    import functools

    from trainers import data

    load = data.load
    data.load = functools.lru_cache(maxsize=None)(load)
    yield
    data.load = load


def _snapshot(root, configs):
    out = {}
    for config in configs:
        trial_id = config.trial_id
        files = {path.name: torch.load(path, weights_only=True)
                 for path in sorted((root / "checkpoints" / trial_id).iterdir())}
        epochs = pd.read_parquet(root / "epochs" / f"{trial_id}.parquet").drop(columns=list(TIMING))
        models = pd.read_parquet(root / "models" / f"{trial_id}.parquet")
        out[trial_id] = (files, epochs, models)
    return out


def _assert_same(got, expected, where):
    assert sorted(got) == sorted(expected)
    for trial_id, (ref_files, ref_epochs, ref_models) in expected.items():
        files, epochs, models = got[trial_id]
        assert sorted(files) == sorted(ref_files), (where, trial_id)
        for name, tensors in ref_files.items():
            assert files[name].keys() == tensors.keys(), (where, trial_id, name)
            assert all(torch.equal(files[name][k], tensors[k]) for k in tensors), (where, trial_id, name)
        pd.testing.assert_frame_equal(epochs, ref_epochs, obj=f"{where}: {trial_id} epochs")
        pd.testing.assert_frame_equal(models, ref_models, obj=f"{where}: {trial_id} models")


def _resume(store, configs):
    """What the driver does at a launch: drop the state of complete trials, then train each
    pack's models not yet complete as that pack."""
    complete = {c.trial_id for c in configs if trial.is_complete(store, c)}
    for trial_id in complete:
        store.delete(*store.checkpoint_parts(trial_id, "state.pt"))
    for models, packed in driver.pending_packs(configs, {c.trial_id for c in configs} - complete, len(configs)):
        assert packed
        trial.train_pack(models, store, device="cpu")


def _reference(root, configs):
    store = RecordingStore(str(root), "exp", skip_noop_deletes=True)
    trial.train_pack(configs, store, device="cpu")
    assert all(trial.is_complete(store, c) for c in configs)
    return store.log, _snapshot(root / "exp", configs)


def _crash_everywhere(tmp_path, configs, log, expected, first_break, after, end=None):
    for index in range(first_break, len(log) if end is None else end):
        root = tmp_path / f"{index}"
        with pytest.raises(Crash):
            trial.train_pack(configs, RecordingStore(str(root), "exp", fail_at=index, after=after, skip_noop_deletes=True), device="cpu")
        store = Store(str(root), "exp")
        _resume(store, configs)
        assert all(trial.is_complete(store, c) for c in configs), log[index]
        _assert_same(_snapshot(root / "exp", configs), expected, f"crash {'after' if after else 'at'} {log[index]}")
        for config in configs:  # neither state is left
            assert not {"state.pt", "previous_state.pt"} & set(store.list("checkpoints", config.trial_id))


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    configs = [TrainConfig(**c) for c in PACK]
    return (configs, *_reference(tmp_path_factory.mktemp("packed"), configs))


def test_a_pack_commits_each_epoch_as_one_unit(packed):
    configs, log, _ = packed
    ids = [c.trial_id for c in configs]
    epoch2 = log[log.index(f"checkpoints/{ids[0]}/previous_state.pt", 1):]
    # previous states, every model's files, every model's state, the previous states deleted
    steps = [name.split("/")[-1] if name.startswith(("checkpoints", "delete")) else name.split("/")[0]
             for name in epoch2[:10]]
    assert steps == ["previous_state.pt", "previous_state.pt", "epochs", "epochs", "state.pt", "state.pt",
                     "previous_state.pt", "previous_state.pt", "previous_state.pt", "previous_state.pt"]
    assert epoch2[6].startswith("delete") and epoch2[7].startswith("delete")


@pytest.mark.parametrize("after", [False, True], ids=["before-write", "after-write"])
def test_a_crash_between_the_commits_of_two_models_resumes_to_the_uninterrupted_pack(packed, tmp_path, after):
    configs, log, expected = packed
    # Everything after the first epoch's commit: the middle epoch, the last and the finish.
    first = [i for i, name in enumerate(log) if name.endswith(f"{configs[-1].trial_id}/state.pt")][0] + 1
    assert len(log) - first >= 12
    _crash_everywhere(tmp_path, configs, log, expected, first, after)


@pytest.mark.parametrize("after", [False, True], ids=["before-write", "after-write"])
def test_a_pack_whose_models_stop_at_different_epochs_resumes_to_the_uninterrupted_pack(tmp_path, after):
    configs = [TrainConfig(**c) for c in STOPPING]
    log, expected = _reference(tmp_path / "reference", configs)
    assert [len(expected[c.trial_id][1]) for c in configs] == [2, 4]  # the first stopped at its target
    # The epoch in which the first model stops and the next, the second model's alone (the
    # last epoch and the finish are the test above's).
    commits = [i for i, name in enumerate(log) if name == f"delete checkpoints/{configs[-1].trial_id}/previous_state.pt"]
    assert len(commits) == 4
    _crash_everywhere(tmp_path, configs, log, expected, commits[0] + 1, after, end=commits[2] + 1)

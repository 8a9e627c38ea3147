"""One trial, trained into the results store: the Ray-free body of a Tune trial.

:func:`train_trial` trains a :class:`~trainers.config.TrainConfig` in a local scratch folder
with :func:`trainers.train.train` and commits every epoch to the store in this order:

1. new checkpoint files (``init.pt``, ``epoch_<k>.pt``, each model's ``<model_id>.pt``);
2. ``epochs/<trial_id>.parquet``, the mode's own tables (``<table>/<trial_id>.parquet``, e.g.
   pruning events), then ``models/<trial_id>.parquet`` once models exist;
3. ``checkpoints/<trial_id>/state.pt`` last: the commit marker of the epoch.

A crash at any write therefore resumes from the previous epoch's state and redoes the epoch,
rewriting the same files with the same contents (training is deterministic on CPU). A crash
after the last epoch's state resumes at the end: nothing is retrained, the missing model
checkpoints are written from the saved state and the trial is finished. Finishing deletes
``state.pt`` (a finished trial needs only its checkpoints); a crash just before that deletion
leaves a complete trial with the file, which the driver deletes at its next launch.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence

import pandas as pd

from sweep import provenance
from sweep.store import DIVERGED, Store
from trainers import checkpoint
from trainers.config import TrainConfig

FAULTS_DIR = "_faults"
# The epoch columns train_trial adds to the trainer's records (see EPOCH_SCHEMA).
STAMPS = ("host", "device", "finished_at")


class InjectedFault(RuntimeError):
    """Raised once per trial by the test-only ``fault_injection`` setting."""


def total_epochs(config: TrainConfig) -> int:
    """The number of epochs the trial's mode trains in all."""
    from trainers.modes.settings import total_epochs as mode_total_epochs

    return mode_total_epochs(config.mode_settings, config.epochs)


def required_early(config: TrainConfig) -> Dict[str, int]:
    """The checkpoint files written on the way (name -> epoch after which it is written)."""
    files = {checkpoint.INIT: 0}
    files.update({checkpoint.early_name(e): e for e in config.checkpoint_epochs})
    return files


def stopped_early(config: TrainConfig, epochs) -> bool:
    """Whether the trial's records (its epochs table) end at an epoch whose training loss
    reached ``stop_at_train_loss``: the run is over, whatever its ``epochs`` cap."""
    return bool(len(epochs)) and epochs["status"].iloc[-1] != DIVERGED and \
        config.reaches_target(float(epochs["train_loss"].iloc[-1]))


def is_complete(store: Store, config: TrainConfig) -> bool:
    """Diverged; or every epoch recorded (up to the cap, or to the epoch that reached
    ``stop_at_train_loss``), the models table written and every checkpoint the config asks
    for (the models', the initial and the early ones up to the last epoch trained) present.
    A trial whose sweep now asks for an early checkpoint it lacks is not complete: it is
    retrained (deterministically, so to the same weights)."""
    trial_id = config.trial_id
    epochs = store.epochs(trial_id)
    if len(epochs) and epochs["status"].iloc[-1] == DIVERGED:
        return True
    if len(epochs) != total_epochs(config) and not stopped_early(config, epochs):
        return False
    models = store.models(trial_id)
    if not len(models):
        return False
    early = {name for name, epoch in required_early(config).items() if epoch <= len(epochs)}
    needed = early | {checkpoint.model_name(m) for m in models["model_id"]}
    return needed <= set(store.list("checkpoints", trial_id))


def _usable_state(store: Store, config: TrainConfig, local: Path) -> bool:
    """Whether the downloaded ``state.pt`` can be resumed from: not when it is past the
    epoch of a checkpoint file the store lacks (newly requested, or lost), which only a
    fresh run can write."""
    present = set(store.list("checkpoints", config.trial_id))
    missing = [epoch for name, epoch in required_early(config).items() if name not in present]
    if not missing:
        return True
    saved = checkpoint.load(local)
    return int(saved["epoch"]) < min(missing)


class _Committer:
    """One trial's side of the store while it trains: its local run folder (with the store's
    ``state.pt``, if usable, downloaded into it) and the per-epoch commit in the order of the
    module docstring."""

    def __init__(self, config: TrainConfig, store: Store, device, restored_state: Optional[Path] = None):
        self.config, self.store = config, store
        self.trial_id = trial_id = config.trial_id
        self.state_parts = store.checkpoint_parts(trial_id, checkpoint.STATE)
        self.run_dir = Path(tempfile.mkdtemp(prefix=f"genzoo-{trial_id}-"))
        self.local_state = self.run_dir / checkpoint.STATE
        try:
            if restored_state is not None:
                shutil.copy(restored_state, self.local_state)
            elif store.exists(*self.state_parts):
                store.download(self.local_state, *self.state_parts)
            if self.local_state.exists() and not _usable_state(store, config, self.local_state):
                self.local_state.unlink()
            self.uploaded = set(store.list("checkpoints", trial_id)) - {checkpoint.STATE}
            # Where and when each epoch ran: kept from the store for the epochs before a resume.
            self.where = {"host": provenance.host(), "device": provenance.device_name(device)}
            self.stamps = {int(r["epoch"]): {k: r.get(k) for k in STAMPS}
                           for r in store.epochs(trial_id).to_dict("records")}
        except BaseException:
            # Before the refactor the scratch folder was removed by train_trial's finally;
            # a store that fails here must not leave it behind either.
            self.close()
            raise

    def commit(self, state) -> None:
        store, trial_id = self.store, self.trial_id
        for path in sorted(self.run_dir.glob("*.pt")):
            if path.name != checkpoint.STATE and path.name not in self.uploaded:
                store.upload(path, *store.checkpoint_parts(trial_id, path.name))
                self.uploaded.add(path.name)
        store.write_epochs(trial_id, [{**r, **self.stamps.get(int(r["epoch"]), {})} for r in state.records])
        for name, rows in sorted(state.tables.items()):
            store.write_table(pd.DataFrame(rows), name, f"{trial_id}.parquet")
        if state.models:
            store.write_models(trial_id, state.models)

    def on_epoch(self, record: Dict[str, Any], state) -> None:
        """After the trainer wrote the epoch locally: commit it, ``state.pt`` last."""
        self.stamps[int(record["epoch"])] = {**self.where, "finished_at": provenance.now()}
        self.commit(state)
        self.store.upload(self.local_state, *self.state_parts)

    def finish(self, result) -> None:
        from trainers.train import COMPLETED

        if result.status == COMPLETED:
            # Idempotent: after a resume at the last epoch this writes what the crash missed.
            self.commit(_Finished(result))
        self.store.delete(*self.state_parts)

    def close(self) -> None:
        shutil.rmtree(self.run_dir, ignore_errors=True)


def _inject_fault(store: Store, key: str, epoch: int, fault_epoch: Optional[int]) -> None:
    if fault_epoch == epoch and not store.exists(FAULTS_DIR, key):
        store.write_text(f"raised at epoch {fault_epoch}\n", FAULTS_DIR, key)
        raise InjectedFault(f"fault injected at epoch {fault_epoch} (test-only setting)")


def train_trial(
    config: TrainConfig,
    store: Store,
    *,
    device=None,
    data_root: Optional[str] = None,
    restored_state: Optional[Path] = None,
    report: Optional[Callable[[Dict[str, Any], Path], None]] = None,
    fault_epoch: Optional[int] = None,
):
    """Train ``config`` into ``store``, resuming from ``restored_state`` (a ``state.pt`` a
    retry was handed) or else from the store's ``state.pt``. ``report(record, state_path)``
    is called after each epoch is committed (the Tune driver reports from there). Returns
    the :class:`trainers.train.TrainResult`."""
    from trainers.train import train

    committer = _Committer(config, store, device, restored_state)
    try:
        def on_epoch(record: Dict[str, Any], state) -> None:
            committer.on_epoch(record, state)
            _inject_fault(store, config.trial_id, record["epoch"], fault_epoch)
            if report is not None:
                report(record, committer.local_state)

        result = train(config, run_dir=committer.run_dir, device=device, data_root=data_root, on_epoch=on_epoch)
        committer.finish(result)
        return result
    finally:
        committer.close()


def train_pack(
    configs: Sequence[TrainConfig],
    store: Store,
    *,
    device=None,
    data_root: Optional[str] = None,
    report: Optional[Callable[[TrainConfig, Dict[str, Any]], None]] = None,
    fault_epoch: Optional[int] = None,
):
    """Train the pack ``configs`` (:func:`trainers.packed.train_packed`) into ``store``: each
    model is committed exactly as :func:`train_trial` commits a trial, and each resumes from
    its own ``state.pt`` in the store. ``report(config, record)`` follows each model's commit.
    The test-only fault is raised once per pack (keyed by its first trial). Returns the
    results, one per config."""
    from trainers.packed import train_packed

    committers = []
    try:
        for config in configs:
            committers.append(_Committer(config, store, device))

        def on_epoch(k: int, record: Dict[str, Any], state) -> None:
            committers[k].on_epoch(record, state)
            if k == 0:
                _inject_fault(store, configs[0].trial_id, record["epoch"], fault_epoch)
            if report is not None:
                report(configs[k], record)

        results = train_packed(configs, run_dirs=[c.run_dir for c in committers], device=device,
                               data_root=data_root, on_epoch=on_epoch)
        for committer, result in zip(committers, results):
            committer.finish(result)
        return results
    finally:
        for committer in committers:
            committer.close()


class _Finished:
    """The parts of a finished run that :func:`train_trial`'s commit reads."""

    def __init__(self, result):
        self.records = result.records
        self.models = result.models
        self.tables = result.tables

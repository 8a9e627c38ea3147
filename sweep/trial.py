"""One trial, trained into the results store: the Ray-free body of a Tune trial.

:func:`train_trial` trains a :class:`~trainers.config.TrainConfig` in a local scratch folder
(:mod:`sweep.scratch`) with :func:`trainers.train.train` and commits every epoch to the store
in this order:

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

A pack (:func:`train_pack`, ``resources.pack``) commits each epoch as one unit, so that no
model is ever resumed from an epoch its packmates have not committed, and a resumed pack
trains as the same pack (the same models vmapped together, hence the same float rounding):

0. every model trained in the epoch writes its last committed state as
   ``checkpoints/<trial_id>/previous_state.pt`` (a marker of epoch 0 when there is none:
   "from scratch");
1. every model's files of the epoch (steps 1 and 2 above);
2. every model's ``state.pt``;
3. every model's ``previous_state.pt`` is deleted: the pack's epoch is committed.

A model with a ``previous_state.pt`` is never complete (:func:`is_complete`), whatever its
other files say, so a crash before step 3 ends keeps every model of the epoch in the pack. A
resumed pack starts from the latest epoch at which every one of its models has a state that
loads (``state.pt`` or ``previous_state.pt``; epoch 0, from scratch, always qualifies): after a
crash in steps 0-2 that is the previous epoch, after a crash in step 3 the new one. Each
model is then resumed from its state at that epoch, and the models train together as they did
before the crash; a model that stopped (at its target loss, or diverged) left the pack at the
same epoch in both runs, so the result is the uninterrupted packed run's, bit for bit on CPU.

A ``state.pt`` (or ``previous_state.pt``) that does not load is reported in one line naming
its store path and ignored: the trial is retrained from the last state that loads, from
scratch if none does (:func:`check_resumable` lets the driver report it before the launch).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

import pandas as pd

from sweep import provenance, scratch
from sweep.store import DIVERGED, Store
from trainers import checkpoint
from trainers.config import TrainConfig

FAULTS_DIR = "_faults"
# The epoch columns train_trial adds to the trainer's records (see EPOCH_SCHEMA).
STAMPS = ("host", "device", "finished_at")
# A packed model's last committed state while its pack commits an epoch (module docstring).
PREVIOUS_STATE = "previous_state.pt"
# Beside the checkpoints of a model brought in by ``genzoo import`` (sweep/importer.py): where
# it came from. Such a trial has no ``init.pt`` unless its source had initial weights.
IMPORTED = "source.json"
# In the scratch folder: the state the store holds as this model's last commit (not ``*.pt``:
# never uploaded as a checkpoint).
_COMMITTED = "state.committed"


class InjectedFault(RuntimeError):
    """Raised once per trial by the test-only ``fault_injection`` setting."""


def _stderr(message: str) -> None:
    print(f"genzoo: {message}", file=sys.stderr, flush=True)


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
    retrained (deterministically, so to the same weights). A packed trial whose pack has not
    finished committing an epoch (it has a ``previous_state.pt``) is not complete either: it
    trains that epoch again with its pack. (:func:`complete` is the rule, from what this reads.)"""
    trial_id = config.trial_id
    present = set(store.list("checkpoints", trial_id))
    epochs = store.epochs(trial_id) if PREVIOUS_STATE not in present else None
    last = epochs.iloc[-1] if epochs is not None and len(epochs) else None
    return complete(config, present, 0 if epochs is None else len(epochs), last,
                    lambda: store.models(trial_id)["model_id"])


def complete(config: TrainConfig, present: Set[str], epochs: int, last: Optional[Mapping[str, Any]],
             model_ids: Callable[[], Iterable[str]]) -> bool:
    """The rule of :func:`is_complete`, from what the store holds for the trial: the names in
    its checkpoint folder, its number of epoch records and the last of them (None without
    any), and its model ids (asked for only when needed). The driver evaluates it for every
    trial of a sweep from one read of each table (:class:`sweep.trials_table.TrialsTable`)."""
    if PREVIOUS_STATE in present:
        return False
    if last is not None and last["status"] == DIVERGED:
        return True
    stopped = last is not None and config.reaches_target(float(last["train_loss"]))
    if epochs != total_epochs(config) and not stopped:
        return False
    models = list(model_ids())
    if not models:
        return False
    early = {name for name, epoch in required_early(config).items() if epoch <= epochs}
    if IMPORTED in present:  # an imported model: its initial weights only if its source had them
        early.discard(checkpoint.INIT)
    needed = early | {checkpoint.model_name(m) for m in models}
    return needed <= present


def _usable(store: Store, config: TrainConfig, epoch: int) -> bool:
    """Whether a state after ``epoch`` epochs can be resumed from: not when it is past the
    epoch of a checkpoint file the store lacks (newly requested, or lost), which only a run
    from an earlier state can write."""
    present = set(store.list("checkpoints", config.trial_id))
    missing = [e for name, e in required_early(config).items() if name not in present]
    return not missing or epoch < min(missing)


def _where(store: Store, *parts: str) -> str:
    return f"{store.uri}/{'/'.join(parts)}"


def _read_state(store: Store, config: TrainConfig, name: str) -> Tuple[Optional[int], Optional[bytes], Optional[str]]:
    """The store's ``checkpoints/<trial_id>/<name>``: ``(epoch, bytes, None)`` when it loads and
    belongs to the trial, ``(None, None, reason)`` when it does not (the reason names its store
    path, in one line), ``(None, None, None)`` when there is none."""
    parts = store.checkpoint_parts(config.trial_id, name)
    if not store.exists(*parts):
        return None, None, None
    where = _where(store, *parts)
    try:
        data = store.read_bytes(*parts)
        saved = checkpoint.load_bytes(data, where)
        if not isinstance(saved, dict) or saved.get("trial_id") != config.trial_id:
            raise checkpoint.CheckpointError(f"{where}: not a state of trial {config.trial_id}")
        return int(saved["epoch"]), data, None
    except checkpoint.CheckpointError as exc:
        return None, None, str(exc).splitlines()[0]
    except (KeyError, TypeError, ValueError) as exc:  # a checkpoint, but not a resumable state
        return None, None, f"{where}: not a resumable state ({type(exc).__name__}: {exc})".splitlines()[0]


def check_resumable(store: Store, configs: Sequence[TrainConfig], out: Callable[[str], None]) -> List[str]:
    """Before a launch, for each trial about to train (a few at a resume: those a kill left
    unfinished): load every checkpoint file it has in the store, its states and the initial,
    early and model checkpoints a resume keeps without writing them again. A file that does
    not load is reported in one line naming its store path and deleted, so that the trial is
    retrained from the last state that loads (from scratch if none; a state past a deleted
    early checkpoint is not resumed from, and a deleted model checkpoint is written again).
    Returns the files deleted."""
    deleted = []
    for config in configs:
        trial_id = config.trial_id
        names = store.list("checkpoints", trial_id, suffix=".pt")
        for name in names:
            parts = store.checkpoint_parts(trial_id, name)
            if name in (checkpoint.STATE, PREVIOUS_STATE):
                _, _, reason = _read_state(store, config, name)
            else:
                try:
                    checkpoint.load_bytes(store.read_bytes(*parts), _where(store, *parts))
                    reason = None
                except checkpoint.CheckpointError as exc:
                    reason = str(exc)
            if reason:
                store.delete(*parts)
                deleted.append("/".join(parts))
                out(f"{reason}; deleted: {trial_id} is retrained from the last state that loads (from scratch if none)")
    return deleted


class _Committer:
    """One model's side of the store while it trains: its scratch folder (with the store's
    ``state.pt``, if it loads and is usable, downloaded into it; a pack places its states
    itself, :func:`_level`) and the per-epoch commit in the order of the module docstring."""

    def __init__(self, config: TrainConfig, store: Store, device, restored_state: Optional[Path] = None, *,
                 packed: bool = False, warn: Callable[[str], None] = _stderr):
        self.config, self.store, self.warn = config, store, warn
        self.trial_id = trial_id = config.trial_id
        self.state_parts = store.checkpoint_parts(trial_id, checkpoint.STATE)
        self.previous_parts = store.checkpoint_parts(trial_id, PREVIOUS_STATE)
        scratch.reap()  # the scratch folders of killed trials
        self.run_dir = scratch.make(trial_id)
        self.local_state = self.run_dir / checkpoint.STATE
        self.committed = self.run_dir / _COMMITTED
        try:
            present = set(store.list("checkpoints", trial_id))
            # A lone trial owns its commits: a previous state left by a pack is dropped at its first.
            self.drop_previous = PREVIOUS_STATE in present
            if restored_state is not None:
                shutil.copy(restored_state, self.local_state)
                if not _usable(store, config, int(checkpoint.load(self.local_state)["epoch"])):
                    self.local_state.unlink()
            elif not packed:
                self._resume_alone()
            self.uploaded = present - {checkpoint.STATE, PREVIOUS_STATE}
            # Where and when each epoch ran: kept from the store for the epochs before a resume.
            self.where = {"host": provenance.host(), "device": provenance.device_name(device)}
            self.stamps = {int(r["epoch"]): {k: r.get(k) for k in STAMPS}
                           for r in store.epochs(trial_id).to_dict("records")}
        except BaseException:
            # A store that fails here must not leave the scratch folder behind.
            self.close()
            raise

    def _resume_alone(self) -> None:
        """The latest usable state that loads, of ``state.pt`` and ``previous_state.pt``."""
        best: Optional[Tuple[int, bytes]] = None
        for name in (checkpoint.STATE, PREVIOUS_STATE):
            epoch, data, reason = _read_state(self.store, self.config, name)
            if reason:
                self.warn(f"{reason}; {self.trial_id} is retrained from the last state that loads "
                          "(from scratch if none)")
            elif epoch and _usable(self.store, self.config, epoch) and (best is None or epoch > best[0]):
                best = (epoch, data)
        if best is not None:
            self.local_state.write_bytes(best[1])

    def found(self) -> Dict[int, Optional[bytes]]:
        """The usable states of this model in the store that load, by epoch (for a pack);
        epoch 0 (from scratch) is always there."""
        states: Dict[int, Optional[bytes]] = {0: None}
        for name in (checkpoint.STATE, PREVIOUS_STATE):
            epoch, data, reason = _read_state(self.store, self.config, name)
            if reason:
                self.warn(f"{reason}; {self.trial_id} is retrained with its pack from the last epoch at which "
                          "every model of the pack has a state that loads (from scratch if none)")
            elif epoch and _usable(self.store, self.config, epoch):
                states[epoch] = data
        return states

    def start_from(self, data: Optional[bytes]) -> None:
        """Resume from the state ``data`` (None: from scratch), which the store holds as committed."""
        self.local_state.unlink(missing_ok=True)
        self.committed.unlink(missing_ok=True)
        if data is not None:
            self.local_state.write_bytes(data)
            self.committed.write_bytes(data)

    def stamp(self, record: Dict[str, Any]) -> None:
        self.stamps[int(record["epoch"])] = {**self.where, "finished_at": provenance.now()}

    def commit(self, state) -> None:
        """The epoch's files: new checkpoints, records, the mode's tables, models."""
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

    def write_previous(self) -> None:
        """Step 0 of a pack's commit: the state the store holds as committed, kept aside."""
        if self.committed.exists():
            self.store.upload(self.committed, *self.previous_parts)
        else:
            self.store.write_bytes(checkpoint.to_bytes({"trial_id": self.trial_id, "epoch": 0}), *self.previous_parts)

    def write_state(self) -> None:
        """The epoch's ``state.pt``: the commit marker of a lone trial, step 2 of a pack's."""
        self.store.upload(self.local_state, *self.state_parts)
        shutil.copyfile(self.local_state, self.committed)

    def on_epoch(self, record: Dict[str, Any], state) -> None:
        """A lone trial, after the trainer wrote the epoch locally: commit it, ``state.pt`` last."""
        self.stamp(record)
        self.commit(state)
        self.write_state()
        if self.drop_previous:
            self.store.delete(*self.previous_parts)
            self.drop_previous = False

    def finish(self, result) -> None:
        from trainers.train import COMPLETED

        if result.status == COMPLETED:
            # Idempotent: after a resume at the last epoch this writes what the crash missed.
            self.commit(_Finished(result))
        # The previous state first: a trial with one is not complete (is_complete).
        self.store.delete(*self.previous_parts)
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
    warn: Callable[[str], None] = _stderr,
):
    """Train ``config`` into ``store``, resuming from ``restored_state`` (a ``state.pt`` a
    retry was handed) or else from the store's latest state that loads. ``report(record,
    state_path)`` is called after each epoch is committed (the Tune driver reports from there);
    ``warn(line)`` receives the one-line report of a state file that does not load. Returns
    the :class:`trainers.train.TrainResult`."""
    from trainers.train import train

    committer = _Committer(config, store, device, restored_state, warn=warn)
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


def _level(committers: Sequence[_Committer]) -> int:
    """Place every model of a pack at the latest epoch at which each has a state that loads
    (0: all from scratch); returns that epoch."""
    found = [committer.found() for committer in committers]
    epoch = max(set.intersection(*(set(states) for states in found)))
    for committer, states in zip(committers, found):
        committer.start_from(states[epoch])
    return epoch


def train_pack(
    configs: Sequence[TrainConfig],
    store: Store,
    *,
    device=None,
    data_root: Optional[str] = None,
    report: Optional[Callable[[TrainConfig, Dict[str, Any]], None]] = None,
    fault_epoch: Optional[int] = None,
    warn: Callable[[str], None] = _stderr,
):
    """Train the pack ``configs`` (:func:`trainers.packed.train_packed`) into ``store``, each
    epoch committed as one unit (module docstring), every model resumed from its state at the
    latest epoch the whole pack committed. ``configs`` are the pack's models not yet complete,
    in the pack's order. ``report(config, record)`` follows the pack's commit, once per model.
    The test-only fault is raised once per pack (keyed by its first trial), after a commit.
    Returns the results, one per config."""
    from trainers.packed import train_packed

    committers: List[_Committer] = []
    try:
        for config in configs:
            committers.append(_Committer(config, store, device, packed=True, warn=warn))
        _level(committers)
        staged: Dict[int, Tuple[Dict[str, Any], Any]] = {}

        def on_epoch(k: int, record: Dict[str, Any], state) -> None:
            committers[k].stamp(record)
            staged[k] = (record, state)

        def on_pack_epoch(ks: List[int]) -> None:
            group = [committers[k] for k in ks]
            for committer in group:
                committer.write_previous()
            for k in ks:
                committers[k].commit(staged[k][1])
            for committer in group:
                committer.write_state()
            for committer in group:
                store.delete(*committer.previous_parts)
            _inject_fault(store, configs[0].trial_id, staged[ks[0]][0]["epoch"], fault_epoch)
            if report is not None:
                for k in ks:
                    report(configs[k], staged[k][0])
            staged.clear()

        results = train_packed(configs, run_dirs=[c.run_dir for c in committers], device=device,
                               data_root=data_root, on_epoch=on_epoch, on_pack_epoch=on_pack_epoch)
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

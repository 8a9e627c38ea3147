"""``trials.parquet`` and ``genzoo sweep status``: every trial's status, derived from the
store (the source of truth) plus the errors Tune reported."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Set

import pandas as pd
import pyarrow.fs as pafs

from sweep import trial
from sweep.config import read_resolved_config
from sweep.launches import last_launch, utilization_text
from sweep.store import (COMPLETED, DIVERGED, ERROR, FINISHED, INCOMPLETE, PENDING, RUNNING, TRIALS_SCHEMA, Store,
                         config_columns)
from trainers.config import TrainConfig
from trainers.status import METRICS

FINAL_METRICS = ("epoch", "minibatch_loss", *METRICS)


@dataclass
class TrialRow:
    config: TrainConfig
    status: str = PENDING
    epochs_done: int = 0
    final: Optional[Dict[str, Any]] = None
    error: Optional[str] = None
    started_at: Any = None  # the start of the first epoch (its finish time less its seconds)


@dataclass
class Snapshot:
    """What the store holds of every trial, from one read of the epochs and models tables
    (their per-trial files and compacted parts) and one recursive listing of ``checkpoints/``:
    a few requests for a whole experiment on a remote store, not several per trial."""

    epochs: pd.DataFrame
    counts: Dict[str, int]
    first: Dict[str, Dict[str, Any]]
    last: Dict[str, Dict[str, Any]]
    models: Dict[str, List[str]]
    files: Dict[str, Set[str]]

    @property
    def training_seconds(self) -> float:
        return float(self.epochs["seconds"].sum()) if len(self.epochs) else 0.0


def snapshot(store: Store) -> Snapshot:
    epochs = store.epochs()
    counts = epochs.groupby("trial_id", sort=False).size().to_dict() if len(epochs) else {}
    first = _rows_by_trial(epochs.drop_duplicates("trial_id", keep="first"))
    last = _rows_by_trial(epochs.drop_duplicates("trial_id", keep="last"))
    models_table = store.models()
    models: Dict[str, List[str]] = {}
    for trial_id, model_id in zip(models_table["trial_id"], models_table["model_id"]):
        models.setdefault(trial_id, []).append(model_id)
    files: Dict[str, Set[str]] = {}
    root = store.path("checkpoints")
    infos = store.fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    for info in infos:
        relative = info.path[len(root) + 1:].split("/")
        if info.type == pafs.FileType.File and len(relative) == 2 and not relative[1].startswith("."):
            files.setdefault(relative[0], set()).add(relative[1])
    return Snapshot(epochs, counts, first, last, models, files)


def _rows_by_trial(frame: pd.DataFrame) -> Dict[str, Dict[str, Any]]:
    return {row["trial_id"]: row for row in frame.to_dict("records")}


class TrialsTable:
    """The driver's view of every trial, rebuilt from the store and kept in ``trials.parquet``."""

    def __init__(self, store: Store, configs: List[TrainConfig], state: Optional[Snapshot] = None):
        self.store = store
        self.rows: Dict[str, TrialRow] = {c.trial_id: TrialRow(c) for c in configs}
        previous = store.trials()
        self.errors = {}
        if "error" in previous.columns:
            self.errors = {
                r.trial_id: r.error for r in previous.itertuples() if isinstance(r.error, str) and r.status == ERROR
            }
        self.state = snapshot(store) if state is None else state
        for trial_id, row in self.rows.items():
            self._set(row, self.state.counts.get(trial_id, 0), self.state.first.get(trial_id),
                      self.state.last.get(trial_id), self.state.files.get(trial_id, set()),
                      lambda t=trial_id: self.state.models.get(t, ()))

    def refresh(self, trial_id: str, *, error: Optional[str] = None) -> TrialRow:
        """Read one trial again (after Tune reported it finished or failed)."""
        row = self.rows[trial_id]
        records = self.store.epochs(trial_id)
        present = set(self.store.list("checkpoints", trial_id))
        if error is not None:
            self.errors[trial_id] = error
        return self._set(row, len(records), records.iloc[0].to_dict() if len(records) else None,
                         records.iloc[-1].to_dict() if len(records) else None, present,
                         lambda: self.store.models(trial_id)["model_id"])

    def _set(self, row: TrialRow, epochs: int, first, last, present, model_ids) -> TrialRow:
        trial_id = row.config.trial_id
        row.epochs_done = epochs
        row.final = last
        row.started_at = None
        if first is not None and "finished_at" in first and not pd.isna(first["finished_at"]):
            row.started_at = (first["finished_at"] - pd.Timedelta(seconds=float(first["seconds"]))).floor("us")
        if trial.complete(row.config, present, epochs, last, model_ids):
            row.status = DIVERGED if last and last["status"] == DIVERGED else COMPLETED
            row.error = None
            self.errors.pop(trial_id, None)
        elif trial_id in self.errors:
            row.status, row.error = ERROR, self.errors[trial_id]
        else:
            row.status = INCOMPLETE if epochs else PENDING
        return row

    def mark_running(self, trial_id: str) -> None:
        if trial_id in self.rows and self.rows[trial_id].status in (PENDING, INCOMPLETE, ERROR):
            self.rows[trial_id].status = RUNNING
            self.rows[trial_id].error = None
            self.errors.pop(trial_id, None)

    def frame(self) -> pd.DataFrame:
        out = []
        for trial_id, row in self.rows.items():
            final = row.final or {}
            out.append({
                "trial_id": trial_id, **config_columns(row.config), "status": row.status,
                "epochs_done": row.epochs_done, "epochs_total": trial.total_epochs(row.config),
                "reached_target": _reached_target(row),
                **{m: final.get(m) for m in FINAL_METRICS if m != "epoch"},
                "host": final.get("host"), "device": final.get("device"), "started_at": row.started_at,
                "finished_at": final.get("finished_at") if row.status in FINISHED else None,
                "error": row.error,
            })
        return pd.DataFrame(out, columns=TRIALS_SCHEMA.names)

    def write(self) -> None:
        self.store.write_table(self.frame(), "trials.parquet", schema=TRIALS_SCHEMA)

    def counts(self) -> Dict[str, int]:
        counts: Dict[str, int] = {}
        for row in self.rows.values():
            counts[row.status] = counts.get(row.status, 0) + 1
        return counts


def _reached_target(row: TrialRow) -> Optional[bool]:
    """Whether a finished trial stopped at its ``stop_at_train_loss``; None without a target,
    before it finished, or when it diverged."""
    if row.config.stop_at_train_loss is None or row.status != COMPLETED or not row.final:
        return None
    return bool(row.config.reaches_target(float(row.final["train_loss"])))


def status_text(store: Store) -> str:
    from sweep.migrate import upgrade

    upgrade(store)
    config = read_resolved_config(store)
    table = TrialsTable(store, config.trials())
    frame = table.frame()
    done = int(frame["epochs_done"].sum())
    total = int(frame["epochs_total"].sum())
    counts = ", ".join(f"{k} {v}" for k, v in sorted(table.counts().items()))
    targets = sorted({c.stop_at_train_loss for c in config.trials() if c.stop_at_train_loss is not None})
    if targets:  # a finished trial stopped at its target: its cap is not work left
        unfinished = ~frame["status"].isin(list(FINISHED))
        bound = done + int((frame["epochs_total"] - frame["epochs_done"])[unfinished].clip(lower=0).sum())
        epochs = (f"epochs: {done} done" + (f", at most {bound} in all" if bound > done else "")
                  + f" (trials stop at training loss {', '.join(f'{t:g}' for t in targets)})")
    else:
        epochs = f"epochs: {done}/{total} done"
    lines = [f"experiment {store.experiment} ({store.uri}): {len(frame)} trials: {counts}", epochs]
    launch = last_launch(store)
    if launch is not None:
        lines.append(f"last launch: {utilization_text(launch)}")
    failed = frame[frame["status"] == ERROR]
    for r in failed.itertuples():
        lines.append(f"  failed {r.trial_id}: {r.error}")
    return "\n".join(lines)

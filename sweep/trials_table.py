"""``trials.parquet`` and ``genzoo sweep status``: every trial's status, derived from the
store (the source of truth) plus the errors Tune reported."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import pandas as pd

from sweep import trial
from sweep.config import read_resolved_config
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


class TrialsTable:
    """The driver's view of every trial, rebuilt from the store and kept in ``trials.parquet``."""

    def __init__(self, store: Store, configs: List[TrainConfig]):
        self.store = store
        self.rows: Dict[str, TrialRow] = {c.trial_id: TrialRow(c) for c in configs}
        previous = store.trials()
        self.errors = {}
        if "error" in previous.columns:
            self.errors = {
                r.trial_id: r.error for r in previous.itertuples() if isinstance(r.error, str) and r.status == ERROR
            }
        for trial_id in self.rows:
            self.refresh(trial_id)

    def refresh(self, trial_id: str, *, error: Optional[str] = None) -> TrialRow:
        row = self.rows[trial_id]
        records = self.store.epochs(trial_id)
        row.epochs_done = len(records)
        row.final = records.iloc[-1].to_dict() if len(records) else None
        row.started_at = None
        if len(records) and "finished_at" in records.columns and not pd.isna(records["finished_at"].iloc[0]):
            first = records.iloc[0]
            row.started_at = (first["finished_at"] - pd.Timedelta(seconds=float(first["seconds"]))).floor("us")
        if error is not None:
            self.errors[trial_id] = error
        if trial.is_complete(self.store, row.config):
            row.status = DIVERGED if row.final and row.final["status"] == DIVERGED else COMPLETED
            row.error = None
            self.errors.pop(trial_id, None)
        elif trial_id in self.errors:
            row.status, row.error = ERROR, self.errors[trial_id]
        else:
            row.status = INCOMPLETE if row.epochs_done else PENDING
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
    from sweep.driver import last_launch, utilization_text
    from sweep.migrate import upgrade

    upgrade(store)
    config = read_resolved_config(store)
    table = TrialsTable(store, config.trials())
    frame = table.frame()
    done = int(frame["epochs_done"].sum())
    total = int(frame["epochs_total"].sum())
    counts = ", ".join(f"{k} {v}" for k, v in sorted(table.counts().items()))
    lines = [f"experiment {store.experiment} ({store.uri}): {len(frame)} trials: {counts}",
             f"epochs: {done}/{total} done"]
    launch = last_launch(store)
    if launch is not None:
        lines.append(f"last launch: {utilization_text(launch)}")
    failed = frame[frame["status"] == ERROR]
    for r in failed.itertuples():
        lines.append(f"  failed {r.trial_id}: {r.error}")
    return "\n".join(lines)

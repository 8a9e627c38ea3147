"""From the store's DataFrames to the analysis inputs: completed trials, the target, the
grid axes, and the measures as one column per measure.

Input schemas (``../shared/DESIGN.md``, "Results store"):

- ``trials``: one row per trial with ``trial_id``, ``status``, the hyperparameter columns and
  the final metrics ``train_acc``, ``test_acc``, ``train_loss``, ``test_loss``.
- ``measures``: long format with ``trial_id``, ``measure``, ``value``, ``status`` ("ok" or
  "error"), ``error``, ``seconds``, ``settings`` (a JSON string) and optionally ``family``.
"""

from __future__ import annotations

import json
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from analysis.errors import AnalysisError

COMPLETED = "completed"
OK = "ok"
MIN_MODELS = 3
SEED_COLUMN = "seed"

# target name -> (description for the report, trials columns it needs)
TARGETS: Dict[str, Tuple[str, Tuple[str, ...]]] = {
    "gap": ("generalization gap g = train_acc − test_acc", ("train_acc", "test_acc")),
    "test_loss": ("test loss (cross-entropy)", ("test_loss",)),
    "test_error": ("test error = 1 − test_acc", ("test_acc",)),
}

# Columns of trials.parquet that are never grid axes when ``hparams`` is not given: the
# bookkeeping and the metrics. Columns named ``*_seconds``, ``*_at``, ``*_path`` or
# ``final_*``/``best_*`` are treated the same way.
NOT_HYPERPARAMETERS = frozenset({
    "trial_id", "status", "error", "message", "traceback", "experiment",
    "train_acc", "test_acc", "train_loss", "test_loss", "gap", "test_error",
    "epoch", "epochs_done", "epochs_completed", "seconds", "images_per_second",
    "attempt", "attempts", "retries", "node", "host", "hostname", "checkpoint",
})
_NOT_HYPERPARAMETER_SUFFIXES = ("_seconds", "_at", "_path")
_NOT_HYPERPARAMETER_PREFIXES = ("final_", "best_")


def check_target(target: str) -> str:
    if target not in TARGETS:
        raise AnalysisError(f"target: got {target!r}, allowed: {', '.join(TARGETS)}")
    return target


def completed_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """The rows with ``status == "completed"``, indexed by ``trial_id`` and sorted by it."""
    for column in ("trial_id", "status"):
        if column not in trials.columns:
            raise AnalysisError(f"trials: missing column {column!r}")
    duplicated = trials["trial_id"][trials["trial_id"].duplicated()]
    if len(duplicated):
        raise AnalysisError(f"trials: duplicate trial_id {duplicated.iloc[0]!r}")
    done = trials[trials["status"] == COMPLETED]
    return done.set_index("trial_id", drop=False).rename_axis(None).sort_index(kind="stable")


def target_values(trials: pd.DataFrame, target: str) -> pd.Series:
    """The target per trial (index ``trial_id``), following the conventions of DESIGN.md:

    - ``gap`` = train_acc − test_acc (0-1 error gap; first paper §5.3);
    - ``test_loss`` = the final test cross-entropy (the double-descent target, first paper §5.4.2);
    - ``test_error`` = 1 − test_acc.
    """
    check_target(target)
    needed = TARGETS[target][1]
    missing = [c for c in needed if c not in trials.columns]
    if missing:
        raise AnalysisError(f"trials: target {target!r} needs column(s) {', '.join(missing)}")
    frame = trials.set_index("trial_id") if "trial_id" in trials.columns else trials
    if target == "gap":
        values = frame["train_acc"].astype(float) - frame["test_acc"].astype(float)
    elif target == "test_loss":
        values = frame["test_loss"].astype(float)
    else:
        values = 1.0 - frame["test_acc"].astype(float)
    return values.rename(target).rename_axis(None)


def _hashable(column: pd.Series) -> bool:
    try:
        column.nunique(dropna=False)
    except TypeError:
        return False
    return True


def _looks_like_bookkeeping(name: str) -> bool:
    return (
        name in NOT_HYPERPARAMETERS
        or name.endswith(_NOT_HYPERPARAMETER_SUFFIXES)
        or name.startswith(_NOT_HYPERPARAMETER_PREFIXES)
    )


def grid_axes(completed: pd.DataFrame, hparams: Optional[Sequence[str]] = None) -> Tuple[List[str], List[str], List[str]]:
    """(axes, hold_fixed, notes) for granulated Kendall and the CMI conditioning sets.

    ``hparams`` given (the sweep's grid axes): those columns, which must exist in ``trials``.
    Otherwise: every column of the completed trials outside :data:`NOT_HYPERPARAMETERS` (and
    the bookkeeping name patterns) whose values are hashable. Either way only the columns that
    take more than one value among the completed trials are kept.

    ``seed`` is never an axis: it is not a hyperparameter axis of the papers (the first
    paper's 324 DEMOGEN models include two initializations per configuration, and its Table 2
    has no seed column). When it varies it is returned in ``hold_fixed``: granulated Kendall
    groups replicate seeds separately, and the CMI pairs span all seeds without conditioning
    on them. ``notes`` explain each column left out.
    """
    notes: List[str] = []
    if hparams is not None:
        missing = [h for h in hparams if h not in completed.columns]
        if missing:
            raise AnalysisError(f"hparams: {', '.join(map(repr, missing))} not column(s) of trials")
        candidates = list(dict.fromkeys(hparams))
    else:
        candidates = [c for c in completed.columns if isinstance(c, str) and not _looks_like_bookkeeping(c)]
    axes: List[str] = []
    for name in candidates:
        if name == SEED_COLUMN:
            continue
        column = completed[name]
        if not _hashable(column):
            if hparams is not None:
                notes.append(f"hyperparameter {name!r} holds lists or arrays and is not used as an axis")
            continue
        if column.nunique(dropna=False) > 1:
            axes.append(name)
        elif hparams is not None:
            notes.append(f"hyperparameter {name!r} takes one value among the completed trials and is not an axis")
    hold_fixed = []
    if SEED_COLUMN in completed.columns and _hashable(completed[SEED_COLUMN]) and completed[SEED_COLUMN].nunique(dropna=False) > 1:
        hold_fixed.append(SEED_COLUMN)
    return axes, hold_fixed, notes


def ok_measures(measures: pd.DataFrame) -> pd.DataFrame:
    """The rows with ``status == "ok"`` (all rows when there is no status column)."""
    for column in ("trial_id", "measure", "value"):
        if column not in measures.columns:
            raise AnalysisError(f"measures: missing column {column!r}")
    if "status" in measures.columns:
        return measures[measures["status"] == OK]
    return measures


def measures_wide(measures: pd.DataFrame, trial_ids: Sequence[str]) -> pd.DataFrame:
    """One row per trial in ``trial_ids`` (in that order), one column per measure (sorted by
    name), the value of its "ok" row; NaN where the trial has no such row or the value is not
    finite. A (trial, measure) pair stored twice keeps its last row."""
    rows = ok_measures(measures)
    rows = rows[rows["trial_id"].isin(list(trial_ids))]
    rows = rows.drop_duplicates(["trial_id", "measure"], keep="last")
    wide = rows.pivot(index="trial_id", columns="measure", values="value")
    wide = wide.reindex(index=list(trial_ids), columns=sorted(map(str, wide.columns))).astype(float)
    wide = wide.where(np.isfinite(wide.to_numpy()))
    wide.index.name = None
    wide.columns.name = None
    return wide


def measure_family(name: str) -> str:
    """``margin/block1/q1`` -> ``margin``: the part of a measure name before the first "/"."""
    return str(name).split("/", 1)[0]


def measure_coverage(measures: pd.DataFrame, trial_ids: Sequence[str]) -> pd.DataFrame:
    """Per measure family: completed trials with an ok finite value for every measure of the
    family, with an error, and with nothing; plus the first error message."""
    ids = list(trial_ids)
    rows = measures[measures["trial_id"].isin(ids)].copy()
    if rows.empty:
        return pd.DataFrame(columns=["family", "ok", "error", "missing", "first_error"])
    rows["family"] = rows["measure"].map(measure_family)
    status = rows["status"] if "status" in rows.columns else pd.Series(OK, index=rows.index)
    rows["good"] = (status == OK) & np.isfinite(rows["value"].astype(float))
    records = []
    for family, group in rows.groupby("family", sort=True):
        by_trial = group.groupby("trial_id")["good"].all()
        ok = int(by_trial.sum())
        failed = by_trial[~by_trial]
        errors = group[~group["good"]]
        message = ""
        if "error" in errors.columns:
            texts = [str(e) for e in errors["error"] if isinstance(e, str) and e]
            message = texts[0].splitlines()[0][:200] if texts else ""
        records.append({
            "family": family, "ok": ok, "error": int(len(failed)),
            "missing": int(len(ids) - len(by_trial)), "first_error": message,
        })
    return pd.DataFrame.from_records(records)


def measure_settings(measures: pd.DataFrame, trial_ids: Sequence[str]) -> pd.DataFrame:
    """Distinct settings per measure family among the ok rows of the completed trials:
    columns ``family``, ``settings`` (canonical JSON, keys sorted) and ``trials``."""
    columns = ["family", "settings", "trials"]
    if "settings" not in measures.columns:
        return pd.DataFrame(columns=columns)
    rows = ok_measures(measures)
    rows = rows[rows["trial_id"].isin(list(trial_ids))]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    family = rows["family"] if "family" in rows.columns else rows["measure"].map(measure_family)
    frame = pd.DataFrame({
        "family": family.astype(str).to_numpy(),
        "settings": [canonical_json(s) for s in rows["settings"]],
        "trial_id": rows["trial_id"].to_numpy(),
    })
    counted = frame.drop_duplicates().groupby(["family", "settings"], sort=True)["trial_id"].nunique()
    return counted.rename("trials").reset_index()[columns]


def canonical_json(settings: object) -> str:
    """A settings value (JSON text, dict or None) as JSON with sorted keys; text that is not
    JSON is kept as it is."""
    if settings is None or (isinstance(settings, float) and np.isnan(settings)):
        return "{}"
    if isinstance(settings, str):
        try:
            settings = json.loads(settings) if settings.strip() else {}
        except json.JSONDecodeError:
            return settings
    return json.dumps(settings, sort_keys=True, default=str)

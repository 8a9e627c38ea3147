"""From the store's DataFrames to the analysis inputs: completed trials, the target, the
grid axes, and the measures as one column per measure.

Input schemas (the store's tables, documented in ``docs/store.md``):

- ``trials``: one row per model with ``trial_id``, ``model_id`` (optional: a zoo of one
  model per trial may leave it out), ``status``, the hyperparameter columns and the final
  metrics ``train_acc``, ``test_acc``, ``train_loss``, ``test_loss``. The caller names the
  hyperparameter columns; nothing here guesses them.
- ``measures``: long format with ``trial_id``, ``model_id`` (optional, as above),
  ``measure``, ``value``, ``status`` ("ok" or "error"), ``error``, ``seconds``, ``settings``
  (a JSON string) and optionally ``family``.

A model is the pair (``trial_id``, ``model_id``); both columns are kept as they are. Its row
label in the analysis (the index of the models, of the measures' wide frame and of the
target; what tables, warnings and figures print) is :func:`model_label` of the pair: the
trial id for a trial's ``final`` model, so a plain-training zoo is labelled by its trial ids,
``<trial_id>/<model_id>`` otherwise.
"""

from __future__ import annotations

import json
from typing import Dict, List, Sequence, Tuple

import numpy as np
import pandas as pd

from analysis.errors import AnalysisError
from analysis.options import TARGETS  # noqa: F401 (defined with the other defaults)

# The store's words for a completed trial and a computed measure row (docs/store.md); the
# analysis reads them but must not import the store (sweep) or the trainer.
COMPLETED = "completed"
OK = "ok"
MIN_MODELS = 3
SEED_COLUMN = "seed"


# The model a trial of plain training yields (the store's FINAL_MODEL; the analysis must not
# import the store).
FINAL_MODEL = "final"


def model_label(trial_id: str, model_id: object = FINAL_MODEL) -> str:
    """The row label of the model (``trial_id``, ``model_id``): the trial id for its ``final``
    model (or a frame without ``model_id``), ``<trial_id>/<model_id>`` otherwise."""
    if model_id is None or model_id == FINAL_MODEL or (isinstance(model_id, float) and np.isnan(model_id)):
        return str(trial_id)
    return f"{trial_id}/{model_id}"


def model_labels(frame: pd.DataFrame) -> pd.Series:
    """:func:`model_label` of every row of ``frame`` (aligned with its index)."""
    if "model_id" not in frame.columns:
        return frame["trial_id"].astype(object)
    return pd.Series([model_label(t, m) for t, m in zip(frame["trial_id"], frame["model_id"])],
                     index=frame.index, dtype=object)


def check_target(target: str) -> str:
    if target not in TARGETS:
        raise AnalysisError(f"target: got {target!r}, allowed: {', '.join(TARGETS)}")
    return target


def completed_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """The rows with ``status == "completed"``, indexed by model label (:func:`model_label`)
    and sorted by it."""
    for column in ("trial_id", "status"):
        if column not in trials.columns:
            raise AnalysisError(f"trials: missing column {column!r}")
    labels = model_labels(trials)
    duplicated = labels[labels.duplicated()]
    if len(duplicated):
        what = "model" if "model_id" in trials.columns else "trial_id"
        raise AnalysisError(f"trials: duplicate {what} {duplicated.iloc[0]!r}")
    return index_by_model(trials[trials["status"] == COMPLETED]).sort_index(kind="stable")


def index_by_model(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (one row per model) indexed by model label, its columns unchanged."""
    return frame.set_axis(pd.Index(model_labels(frame).to_numpy(), dtype=object), axis=0)


def target_values(trials: pd.DataFrame, target: str) -> pd.Series:
    """The target per model (index: its label, :func:`model_label`), following the conventions of ``docs/store.md``:

    - ``gap`` = train_acc − test_acc (0-1 error gap; first paper §5.3);
    - ``test_loss`` = the final test cross-entropy (the double-descent target, first paper §5.4.2);
    - ``test_error`` = 1 − test_acc.
    """
    check_target(target)
    needed = TARGETS[target][1]
    missing = [c for c in needed if c not in trials.columns]
    if missing:
        raise AnalysisError(f"trials: target {target!r} needs column(s) {', '.join(missing)}")
    frame = index_by_model(trials) if "trial_id" in trials.columns else trials
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


def grid_axes(completed: pd.DataFrame, hparams: Sequence[str]) -> Tuple[List[str], List[str], List[str]]:
    """(axes, hold_fixed, notes) for granulated Kendall and the CMI conditioning sets.

    ``hparams`` are the sweep's grid axes, which must be columns of ``trials``; only those
    that take more than one value among the completed trials are kept.

    ``seed`` is never an axis: it is not a hyperparameter axis of the papers (the first
    paper's 324 DEMOGEN models include two initializations per configuration, and its Table 2
    has no seed column). When it varies it is returned in ``hold_fixed``: granulated Kendall
    groups replicate seeds separately, and the CMI pairs span all seeds without conditioning
    on them. ``notes`` explain each column left out.
    """
    notes: List[str] = []
    missing = [h for h in hparams if h not in completed.columns]
    if missing:
        raise AnalysisError(f"hparams: {', '.join(map(repr, missing))} not column(s) of trials")
    candidates = list(dict.fromkeys(hparams))
    axes: List[str] = []
    for name in candidates:
        if name == SEED_COLUMN:
            continue
        column = completed[name]
        if not _hashable(column):
            notes.append(f"hyperparameter {name!r} holds lists or arrays and is not used as an axis")
            continue
        if column.nunique(dropna=False) > 1:
            axes.append(name)
        else:
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
    """One row per model label in ``trial_ids`` (in that order), one column per measure (sorted
    by name), the value of its "ok" row; NaN where the model has no such row or the value is
    not finite. A (model, measure) pair stored twice keeps its last row."""
    rows = ok_measures(measures)
    rows = rows.assign(_model=model_labels(rows))
    rows = rows[rows["_model"].isin(list(trial_ids))]
    rows = rows.drop_duplicates(["_model", "measure"], keep="last")
    wide = rows.pivot(index="_model", columns="measure", values="value")
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
    rows = measures.assign(_model=model_labels(measures))
    rows = rows[rows["_model"].isin(ids)].copy()
    if rows.empty:
        return pd.DataFrame(columns=["family", "ok", "error", "missing", "first_error"])
    rows["family"] = rows["measure"].map(measure_family)
    status = rows["status"] if "status" in rows.columns else pd.Series(OK, index=rows.index)
    rows["good"] = (status == OK) & np.isfinite(rows["value"].astype(float))
    records = []
    for family, group in rows.groupby("family", sort=True):
        by_trial = group.groupby("_model")["good"].all()
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
    labels = model_labels(rows)
    rows, labels = rows[labels.isin(list(trial_ids))], labels[labels.isin(list(trial_ids))]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    family = rows["family"] if "family" in rows.columns else rows["measure"].map(measure_family)
    frame = pd.DataFrame({
        "family": family.astype(str).to_numpy(),
        "settings": [canonical_json(s) for s in rows["settings"]],
        "model": labels.to_numpy(),
    })
    counted = frame.drop_duplicates().groupby(["family", "settings"], sort=True)["model"].nunique()
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

"""Warnings a report must give before its correlations are read: a target whose spread
across models is below its own test-set noise, models that do not fit their training data, a
measure that is (nearly) constant or stuck at a bound of its settings, and a stochastic
estimate whose standard error is large next to the spread across models.

Each check is a small pure function returning one-line warnings (empty when all is well).

Constants:

- ``MIN_DISTINCT`` = 10 distinct values a measure should take (the issue's acceptance rule);
  on zoos of fewer than 20 models the bound is half the models, rounded up.
- ``DOMINANT_SHARE`` = 0.9: a measure with one value for at least 90% of the models is
  nearly constant (``random_prunability`` = 1.0 for 31 of 32 models).
- ``FIT_ACCURACY`` = 0.95: a median training accuracy below it means the models do not fit
  their training data, and train loss alone then tracks the test loss.
- ``NOISE_RATIO`` = 0.5: a stochastic estimate whose median standard error exceeds half the
  standard deviation of the measure across models is dominated by its own noise.
- ``SATURATED_SHARE`` = 0.5: a measure at its settings' bound for at least half the models is
  degenerate (effective dimensionality at ``top_k``, ε-flatness capped at ``eps_max``).
"""

from __future__ import annotations

import json
import math
from typing import Dict, List, Optional

import numpy as np
import pandas as pd

from analysis.data import ok_measures

MIN_DISTINCT = 10
DOMINANT_SHARE = 0.9
FIT_ACCURACY = 0.95
NOISE_RATIO = 0.5
SATURATED_SHARE = 0.5
# Relative tolerance of "at the bound" for a value bounded above by a setting.
BOUND_TOLERANCE = 1e-3

# measure -> (info key of its standard error, name of the estimator)
STANDARD_ERRORS: Dict[str, tuple] = {
    "hessian_trace": ("hutchinson_stderr", "Hutchinson"),
}
def _top_k_per_parameter(info: dict) -> float:
    top_k, parameters = info.get("top_k"), info.get("num_parameters")
    return top_k / parameters if top_k and parameters else math.nan


# measure -> (its upper bound from the row's info, how the bound reads, the setting to raise):
# N_eff / k = Σ λ/(λ+z) / k over the top_k eigenvalues is below top_k / k (k parameters).
UPPER_BOUNDS: Dict[str, tuple] = {
    "effective_dimensionality": (_top_k_per_parameter, "top_k / parameter count", "flatness.top_k"),
}
# measure -> info key that is true when the search hit its cap
CAPPED: Dict[str, str] = {
    "eps_flatness": "eps_capped",
}
# Monte-Carlo σ searches (PAC-Bayes, measure 1/σ²): the bisection leaves σ in [sigma, sigma_upper].
SIGMA_SEARCHES = ("pac_bayes_flat", "pac_bayes_mag_flat")


def binomial_se(accuracy: float, examples: int) -> float:
    """Standard error of one model's accuracy on ``examples`` test images, each right with
    probability p = ``accuracy``: sqrt(p (1 − p) / n) (binomial; 0.016 at p = 0.89, n = 360)."""
    return math.sqrt(max(accuracy * (1.0 - accuracy), 0.0) / examples)


def target_spread_and_noise(target: str, values: pd.Series, test_acc: Optional[pd.Series],
                            test_examples: Optional[int]) -> Optional[tuple]:
    """(standard deviation of the target across models, :func:`binomial_se` of one model at
    the mean test accuracy), or None when the noise is not known (see below)."""
    if target not in ("gap", "test_error") or test_acc is None or not test_examples:
        return None
    spread = float(np.std(values.to_numpy(dtype=float), ddof=1))
    return spread, binomial_se(float(test_acc.astype(float).mean()), int(test_examples))


def target_noise_warnings(target: str, values: pd.Series, test_acc: Optional[pd.Series],
                          test_examples: Optional[int]) -> List[str]:
    """Warn when the standard deviation of the target across models is below the standard
    error of one model's target on the test set (:func:`binomial_se` at the mean test
    accuracy; the gap and the test error carry the test accuracy's noise, the training
    accuracy being measured on the whole training set). For ``test_loss`` the noise needs
    per-example losses, which the store does not keep: nothing is said."""
    measured = target_spread_and_noise(target, values, test_acc, test_examples)
    if measured is None:
        return []
    spread, noise = measured
    if spread >= noise:
        return []
    return [f"target spread below test-set noise: the {target} has standard deviation {spread:.4f} across models, "
            f"less than one model's test-set standard error {noise:.4f} ({test_examples} test images); "
            f"its ranking is mostly noise"]


def fit_warnings(train_acc: Optional[pd.Series]) -> List[str]:
    """Warn when the median training accuracy is below ``FIT_ACCURACY``."""
    if train_acc is None or len(train_acc) == 0:
        return []
    median = float(train_acc.astype(float).median())
    if median >= FIT_ACCURACY:
        return []
    return [f"underfit zoo: median training accuracy {median:.4f} < {FIT_ACCURACY}; the models do not fit their "
            f"training data, so training-set statistics (train loss) predict test-set ones trivially"]


def min_distinct(n_models: int) -> int:
    """``MIN_DISTINCT``, or half the models (rounded up) on zoos too small for it."""
    return min(MIN_DISTINCT, math.ceil(n_models / 2))


def degenerate_warnings(wide: pd.DataFrame) -> Dict[str, str]:
    """Per measure column of ``wide`` (one row per model): a warning when it is constant, has
    one value for at least ``DOMINANT_SHARE`` of the models, or takes fewer than
    :func:`min_distinct` distinct values."""
    found: Dict[str, str] = {}
    for name in wide.columns:
        values = wide[name].dropna()
        n = len(values)
        if n < 2:
            continue
        counts = values.value_counts()
        distinct = len(counts)
        if distinct == 1:
            found[name] = f"{name} is constant ({_number(values.iloc[0])} for all {n} models)"
        elif counts.iloc[0] >= DOMINANT_SHARE * n:
            found[name] = (f"{name} is nearly constant ({_number(counts.index[0])} for {int(counts.iloc[0])} "
                           f"of {n} models)")
        elif distinct < min_distinct(n):
            found[name] = f"{name} takes only {distinct} distinct values over {n} models"
    return found


def _number(value: object) -> str:
    return f"{float(value):.6g}"


def _infos(measures: pd.DataFrame, ids: List[str]) -> pd.DataFrame:
    """(trial_id, measure, value, info dict) of the ok rows of the models ``ids``."""
    rows = ok_measures(measures)
    rows = rows[rows["trial_id"].isin(ids)].drop_duplicates(["trial_id", "measure"], keep="last")
    if "settings" not in rows.columns:
        return pd.DataFrame(columns=["trial_id", "measure", "value", "info"])
    infos = []
    for text in rows["settings"]:
        try:
            parsed = json.loads(text) if isinstance(text, str) and text.strip() else {}
        except json.JSONDecodeError:
            parsed = {}
        info = parsed.get("info") if isinstance(parsed, dict) else None
        infos.append(info if isinstance(info, dict) else {})
    return pd.DataFrame({"trial_id": rows["trial_id"].to_numpy(), "measure": rows["measure"].to_numpy(),
                         "value": rows["value"].astype(float).to_numpy(), "info": infos})


def bound_warnings(measures: pd.DataFrame, ids: List[str]) -> Dict[str, str]:
    """A warning per measure that sits at a bound of its settings for at least
    ``SATURATED_SHARE`` of the models (:data:`UPPER_BOUNDS`, :data:`CAPPED`)."""
    found: Dict[str, str] = {}
    table = _infos(measures, ids)
    for name, (bound_of, description, setting) in UPPER_BOUNDS.items():
        part = table[table["measure"] == name]
        bounds = part["info"].map(bound_of).astype(float)
        at = (part["value"] >= bounds * (1 - BOUND_TOLERANCE)) & bounds.notna()
        if len(part) and at.sum() >= SATURATED_SHARE * len(part):
            found[name] = (f"{name} is at its bound {description} for {int(at.sum())} of {len(part)} models "
                           f"(every top eigenvalue ≫ z); raise {setting}")
    for name, key in CAPPED.items():
        part = table[table["measure"] == name]
        capped = part["info"].map(lambda info: bool(info.get(key)))
        if len(part) and capped.sum() >= SATURATED_SHARE * len(part):
            found[name] = f"{name} hit its search cap ({key}) for {int(capped.sum())} of {len(part)} models"
    return found


def noise_warnings(measures: pd.DataFrame, ids: List[str]) -> Dict[str, str]:
    """A warning per stochastic measure whose median standard error over the models exceeds
    ``NOISE_RATIO`` times the standard deviation of the measure across models: the Hutchinson
    trace (:data:`STANDARD_ERRORS`) and the Monte-Carlo σ searches of PAC-Bayes, whose
    uncertainty is half the width of 1/σ² over the final bisection bracket [σ, σ_upper]."""
    found: Dict[str, str] = {}
    table = _infos(measures, ids)
    errors: Dict[str, tuple] = {}
    for name, (key, estimator) in STANDARD_ERRORS.items():
        part = table[table["measure"] == name]
        se = pd.to_numeric(part["info"].map(lambda info: info.get(key)), errors="coerce")
        errors[name] = (part["value"], se, f"{estimator} standard error")
    for name in SIGMA_SEARCHES:
        part = table[table["measure"] == name]

        def half_width(info: dict) -> float:
            entry = info.get(name) or {}
            low, high = entry.get("sigma"), entry.get("sigma_upper")
            if not low or not high:
                return math.nan
            return 0.5 * (1.0 / low ** 2 - 1.0 / high ** 2)

        errors[name] = (part["value"], part["info"].map(half_width).astype(float),
                        "Monte-Carlo σ-search half-bracket")
    for name, (values, se, label) in errors.items():
        values = values[np.isfinite(values.to_numpy())]
        se = se[np.isfinite(se.to_numpy())]
        if len(values) < 2 or len(se) == 0:
            continue
        spread = float(np.std(values.to_numpy(), ddof=1))
        median_se = float(np.median(se.to_numpy()))
        if median_se > NOISE_RATIO * spread:
            found[name] = (f"{name}: the {label} (median {_number(median_se)}) is large next to its spread across "
                           f"models (standard deviation {_number(spread)}); its ranking is mostly estimation noise")
    return found

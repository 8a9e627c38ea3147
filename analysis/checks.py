"""Warnings a report must give before its correlations are read: a target whose spread
across models is not well above its own test-set noise, models that do not fit their training
data, a measure that is (nearly) constant or stuck at a bound of its settings, a stochastic
estimate whose standard error is large next to the spread across models, a measure computed on
fewer models than the zoo holds, a measure that ranks convergence rather than generalization
in a zoo not trained to a common loss, and a zoo too small for the effects of the paper it is
compared with.

Each check is a small pure function returning one-line warnings (empty when all is well).

Constants:

- ``SPREAD_FACTOR`` = 2: the target's standard deviation across models must be at least
  twice one model's test-set standard error. At 1× (the rule before issue 21) half of the
  spread of a zoo can still be test-set noise: ``stability_demo``'s gap spread equalled one
  model's standard error and no warning fired.
- ``CONVERGENCE_TAU`` = 0.5: in a zoo not trained to a common loss, a measure whose |τ| with
  the models' final training loss exceeds 0.5, or exceeds its |τ| with the target, is flagged
  as confounded by convergence, provided that |τ| with the training loss is itself beyond
  ``2 s_τ`` (distinguishable from chance). Prunability's tolerance β is relative to the
  model's own training loss, so on a zoo whose losses spread over orders of magnitude it
  ranks how far each model converged (τ(prunability, train loss) = −0.51 on the demo of
  issue 21). ``CONVERGENCE_EXEMPT`` = (``train_loss``,): the measure that is the final
  training loss by definition.
- ``TARGET_FACTOR`` = 2: a zoo trained with ``stop_at_train_loss`` counts as trained to a
  common loss when every model reached it, or ended (at its epoch cap) within a factor 2 above
  it; a model whose final training loss lies outside a factor 2 of the target either way is
  listed in a warning of its own.

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

from analysis.data import measure_family, model_labels, ok_measures
from analysis.kendall import kendall_tau, kendall_tau_se

SPREAD_FACTOR = 2.0
CONVERGENCE_TAU = 0.5
CONVERGENCE_EXEMPT = ("train_loss",)
TARGET_FACTOR = 2.0
# The trials column that says a zoo was trained to a common loss (null when unset).
STOP_COLUMN = "stop_at_train_loss"
# Whether a model stopped by reaching it (null without a target).
REACHED_COLUMN = "reached_target"
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
    """Warn when the standard deviation of the target across models is below ``SPREAD_FACTOR``
    (2) times the standard error of one model's target on the test set (:func:`binomial_se`
    at the mean test accuracy; the gap and the test error carry the test accuracy's noise,
    the training accuracy being measured on the whole training set). For ``test_loss`` the
    noise needs per-example losses, which the store does not keep: nothing is said."""
    measured = target_spread_and_noise(target, values, test_acc, test_examples)
    if measured is None:
        return []
    spread, noise = measured
    if spread >= SPREAD_FACTOR * noise:
        return []
    return [f"target spread below {SPREAD_FACTOR:g}× test-set noise: the {target} has standard deviation "
            f"{spread:.4f} across models, {spread / noise:.1f} times one model's test-set standard error "
            f"{noise:.4f} ({test_examples} test images); much of its ranking is noise"]


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
    """(model label, measure, value, info dict) of the ok rows of the models ``ids``."""
    rows = ok_measures(measures)
    rows = rows.assign(model=model_labels(rows))
    rows = rows[rows["model"].isin(ids)].drop_duplicates(["model", "measure"], keep="last")
    if "settings" not in rows.columns:
        return pd.DataFrame({"model": pd.Series(dtype=object), "measure": pd.Series(dtype=object),
                             "value": pd.Series(dtype=float), "info": pd.Series(dtype=object)})
    infos = []
    for text in rows["settings"]:
        try:
            parsed = json.loads(text) if isinstance(text, str) and text.strip() else {}
        except json.JSONDecodeError:
            parsed = {}
        info = parsed.get("info") if isinstance(parsed, dict) else None
        infos.append(info if isinstance(info, dict) else {})
    return pd.DataFrame({"model": rows["model"].to_numpy(), "measure": rows["measure"].to_numpy(),
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


def measure_counts(wide: pd.DataFrame) -> pd.Series:
    """Per measure column of ``wide`` (one row per model of the zoo): the number of models
    with a finite value."""
    return wide.notna().sum(axis=0).astype(int)


def partial_measures(wide: pd.DataFrame) -> Dict[str, int]:
    """The measures of ``wide`` with a finite value for fewer than all of its rows (the
    zoo's models), with their counts: measure -> models with a value."""
    counts = measure_counts(wide)
    return {str(name): int(count) for name, count in counts.items() if count < len(wide)}


def coverage_warnings(partial: Dict[str, int], n_models: int, *, included: bool = False) -> List[str]:
    """One warning per measure family with measures in ``partial`` (measure -> models with a
    value, of the ``n_models`` of the zoo): their coverage, and whether they were left out
    of Tables 1–3 (the default) or kept (``included``, ``genzoo analyze --include-partial``).
    A measure on a few models of a zoo (an interrupted ``genzoo measure``) ranks those few,
    which can give CMI 1.0 or an adjusted R² of 0.9999 beside the complete measures."""
    by_family: Dict[str, List[str]] = {}
    for name in sorted(partial):
        by_family.setdefault(measure_family(name), []).append(name)
    found = []
    for family, names in sorted(by_family.items()):
        counts = sorted({partial[n] for n in names})
        coverage = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"
        what = names[0] if len(names) == 1 else f"{len(names)} measures of family {family}"
        fate = ("kept in Tables 1–3 (--include-partial)" if included
                else "left out of Tables 1–3 (genzoo analyze --include-partial keeps them)")
        found.append(f"partial measure: {what} computed on {coverage} of the {n_models} models; {fate}")
    return found


def _common_target(models: pd.DataFrame) -> Optional[float]:
    """The one ``stop_at_train_loss`` of every model, or None (missing, unset or several)."""
    if STOP_COLUMN not in models.columns or len(models) == 0:
        return None
    values = pd.to_numeric(models[STOP_COLUMN], errors="coerce")
    if not (values.notna().all() and values.nunique() == 1):
        return None
    return float(values.iloc[0])


def trained_to_common_loss(models: pd.DataFrame) -> bool:
    """Whether every model was trained until the same training loss: the trials column
    ``stop_at_train_loss`` (``STOP_COLUMN``) is present, set (not null) for every model and
    one value, and every model either ``reached_target`` or ended, at its epoch cap, with a
    final ``train_loss`` at most ``TARGET_FACTOR`` times the target (without a
    ``reached_target`` column, every model within that factor). A missing column means
    "not set" (stores written before it)."""
    target = _common_target(models)
    if target is None:
        return False
    loss = pd.to_numeric(models["train_loss"], errors="coerce") if "train_loss" in models.columns else None
    near = loss <= TARGET_FACTOR * target if loss is not None else pd.Series(False, index=models.index)
    if REACHED_COLUMN in models.columns:
        reached = models[REACHED_COLUMN].astype("boolean").fillna(False).astype(bool)
        return bool((reached | near).all())
    return bool(near.all())


def off_target_warnings(models: pd.DataFrame) -> List[str]:
    """One warning listing the models whose final training loss lies outside a factor
    ``TARGET_FACTOR`` of their ``stop_at_train_loss`` (above: stopped by the epoch cap; below:
    the epoch that reached the target overshot it), when a target is set."""
    if STOP_COLUMN not in models.columns or "train_loss" not in models.columns:
        return []
    target = pd.to_numeric(models[STOP_COLUMN], errors="coerce")
    loss = pd.to_numeric(models["train_loss"], errors="coerce")
    off = target.notna() & ((loss > TARGET_FACTOR * target) | (loss < target / TARGET_FACTOR))
    if not off.any():
        return []
    listed = ", ".join(f"{key} ({loss[key]:.3g} for {target[key]:g})" for key in models.index[off][:5])
    more = f" and {int(off.sum()) - 5} more" if off.sum() > 5 else ""
    return [f"off target: {int(off.sum())} of {int(target.notna().sum())} models ended training outside a factor "
            f"{TARGET_FACTOR:g} of their stop_at_train_loss: {listed}{more}"]


def convergence_confounds(models: pd.DataFrame, wide: pd.DataFrame, target: pd.Series) -> pd.DataFrame:
    """Per measure column of ``wide`` (same index as ``models``): τ with the models' final
    ``train_loss`` and with ``target`` over the models with all three finite, and whether it
    is confounded by convergence (the rule of ``CONVERGENCE_TAU`` in the module docstring).
    Empty when the zoo was trained to a common loss (:func:`trained_to_common_loss`) or
    has no ``train_loss`` column."""
    columns = ["measure", "n_models", "tau_train_loss", "tau_target", "confounded"]
    if trained_to_common_loss(models) or "train_loss" not in models.columns:
        return pd.DataFrame(columns=columns)
    loss = pd.to_numeric(models["train_loss"], errors="coerce").astype(float)
    records = []
    for name in wide.columns:
        if name in CONVERGENCE_EXEMPT:
            continue
        frame = pd.DataFrame({"m": wide[name], "loss": loss, "g": target.reindex(wide.index)}).astype(float)
        frame = frame[np.isfinite(frame.to_numpy()).all(axis=1)]
        n = len(frame)
        if n < 3 or frame["loss"].nunique() < 2:
            continue
        tau_loss = kendall_tau(frame["m"], frame["loss"])
        tau_target = kendall_tau(frame["m"], frame["g"])
        confounded = abs(tau_loss) > 2 * kendall_tau_se(n) and (
            abs(tau_loss) > CONVERGENCE_TAU or abs(tau_loss) > abs(tau_target))
        records.append({"measure": name, "n_models": n, "tau_train_loss": tau_loss, "tau_target": tau_target,
                        "confounded": bool(confounded)})
    return pd.DataFrame.from_records(records, columns=columns)


def convergence_warnings(confounds: pd.DataFrame, models: pd.DataFrame, target: str) -> List[str]:
    """One warning naming every measure :func:`convergence_confounds` flags (sorted by |τ|
    with the training loss, largest first), with both τ, and the spread of the final training
    losses."""
    if confounds.empty or not confounds["confounded"].any():
        return []
    loss = pd.to_numeric(models["train_loss"], errors="coerce")
    flagged = confounds[confounds["confounded"]]
    flagged = flagged.iloc[np.argsort(-flagged["tau_train_loss"].abs().to_numpy(), kind="stable")]
    listed = ", ".join(f"{row.measure} (τ {row.tau_train_loss:.2f} with the training loss, "
                       f"{row.tau_target:.2f} with the {target})" for row in flagged.itertuples())
    return [f"confounded by convergence: {len(flagged)} measure(s) follow the final training loss more than the "
            f"{target} or beyond |τ| {CONVERGENCE_TAU:g}, in a zoo not trained to a common loss (final training "
            f"losses {loss.min():.2g} to {loss.max():.2g}; {_stop_advice(models)}): {listed}"]


def _stop_advice(models: pd.DataFrame) -> str:
    if _common_target(models) is None:
        return "set one stop_at_train_loss for the zoo"
    return f"models that missed stop_at_train_loss by more than a factor {TARGET_FACTOR:g}: raise train.epochs"


def too_small_warnings(results: pd.DataFrame) -> List[str]:
    """One warning per compared experiment with claims this zoo is too small to test (the
    ``too_small`` column of :func:`analysis.against_paper.compare`): the paper's effect is
    below 2 null standard errors of the statistic for this zoo, or the claim rests on fewer
    than 3 models or runs, which give no interval at all (``imp_demo``'s 2 seeds per noise
    level)."""
    if results.empty or "too_small" not in results.columns:
        return []
    found = []
    for experiment, part in results.groupby("experiment", sort=False):
        small = part[part["too_small"].astype(bool)]
        if small.empty:
            continue
        examples = ", ".join(
            f"{row.claim} (|{row.paper_value:.3g}| < {row.detectable:.3g})"
            if math.isfinite(row.paper_value) and math.isfinite(row.detectable) else f"{row.claim} (n = {row.n})"
            for row in small.head(3).itertuples())
        more = f" and {len(small) - 3} more" if len(small) > 3 else ""
        found.append(f"zoo too small for {len(small)} of the {len(part)} claims of {experiment}: an effect of the "
                     f"paper's size is below 2 standard errors of the statistic, or fewer than 3 models or runs "
                     f"give no interval, e.g. {examples}{more}")
    return found

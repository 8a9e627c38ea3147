"""The robust sign-error analysis of Dziugaite, Drouin, Neal, Rajkumar, Caballero, Wang,
Mitliagkas and Roy, "In search of robust measures of generalization" (NeurIPS 2020): pure
functions on pandas/numpy, no figures (the report section is
:func:`analysis.main_sections.sign_error_section`).

The paper scores a generalization measure C by how often it orders a *coupled* pair of
networks the wrong way, in the worst case over *environments*, instead of by one average
correlation over the whole zoo.

Definitions (the paper's Sections 4–6 and its public code; symbols as in the paper):

- **Configuration**: the values of the zoo's grid axes (``seed`` is never an axis, see
  :func:`analysis.data.grid_axes`), plus ``model_id`` when a trial yields several models (two
  models of one trial are never coupled: their difference is not a grid axis).
- **Environment** e: an unordered pair of configurations {a, b} that differ in exactly one grid
  axis, the environment's *hyperparameter* (the paper's "coupled networks", Section 5). Its
  distribution P^e is over the training randomness: the samples of e are *every* pair of one
  model of a and one model of b, i.e. every seed of a against every seed of b (the expectation
  over two independent runs, as the paper's code does), each sample a coupled pair (w, w').
- **Sign error** of a sample (the paper's sign-error loss):
  ``ψ(C; w, w') = (1 − sgn(C(w') − C(w)) · sgn(g(w') − g(w))) / 2`` with g the target
  (the generalization gap in the paper). ψ is 0 when C orders the pair as g does, 1 when it
  orders it the other way, and ½ when either difference is exactly zero (sgn 0: a tie is a
  coin flip). A measure equal to g has sign error 0, −g has 1, a constant measure ½.
- **Monte Carlo noise** (the paper's filter for pairs whose gap difference may be test-set
  noise): each model's target is estimated on n test examples. By Hoeffding's inequality one
  model's estimate lies further than d/2 from its mean with probability at most
  ``φ(d) = 2 exp(−2 n (d/2)²)``, so the observed order of two models whose targets differ by
  d = |g(w') − g(w)| is their true order with probability at least
  ``p(d) = max(0, 1 − φ(d))²`` (:func:`hoeffding_weight`). A sample is weighted by
  ``v = (p(d) − MIN_WEIGHT)₊`` (:func:`pair_weight`): pairs whose order is correct with
  probability below ``MIN_WEIGHT`` = ½ are left out, the others count in proportion to how
  far they are above it. The noise is that of the test accuracy, so it applies to the
  targets ``gap`` (the training accuracy is measured on the whole training set) and
  ``test_error``; for ``test_loss`` (unbounded) or an unknown n every sample has weight 1.
- **Environment sign error** ``ψ_e = Σ v ψ / Σ v`` over the samples of e, and its effective
  sample size ``ESS_e = (Σ v)² / Σ v²`` (Kish). An environment enters the summaries only when
  ``ESS_e ≥ MIN_ESS`` = 12 (the paper's figures use 12): an environment estimated from a few
  noisy pairs says little about its expected sign error. With S seeds per configuration
  ``ESS_e ≤ S²``, so a zoo needs at least 4 seeds per configuration for any environment to
  count at the paper's threshold.
- **Summaries** per hyperparameter (and over all of them, ``all``): the number of environments,
  the number kept, and the mean, the ``PERCENTILE`` = 90th percentile (numpy's linear
  interpolation) and the maximum of ψ_e over the kept environments. The maximum is the
  paper's *robust sign error* ``sup_e ψ_e`` over the family of environments where that
  hyperparameter varies. The paper's figure is the cumulative distribution of ψ_e over the
  environments, per hyperparameter, with these three statistics drawn on it.

**Cost.** An environment of configurations with S_a and S_b seeds has S_a·S_b samples, which
grows with the square of the seeds (a zoo of 1,000 seeds per configuration: a million per
environment, and the analysis of a 100,000-trial zoo ran out of 24 GiB). Beyond
``MAX_PAIRS`` = 10,000 samples an environment is estimated from ``MAX_PAIRS`` pairs drawn
uniformly with replacement (seeded per environment: ``SEED`` + its position), so the cost is
linear in the models whatever the seeds; the sampling error of ψ_e is then at most
0.5/√10,000 = 0.005, and its ESS is that of the drawn pairs (at most 10,000, far above 12).

Each unordered environment is counted once (the paper's code enumerates both orders, which
doubles every environment: the mean and maximum are the same, the interpolated 90th
percentile can differ slightly).
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from analysis.errors import AnalysisError

# A sample whose order is right with probability below this is left out; the others weigh
# (p − MIN_WEIGHT) (the paper's Monte Carlo noise filter).
MIN_WEIGHT = 0.5
# The smallest effective sample size (Σv)²/Σv² of an environment that enters the summaries
# (the paper's figures: 12).
MIN_ESS = 12.0
# The percentile reported beside the mean and the maximum (the paper's figure: 90).
PERCENTILE = 90.0
# An environment with more coupled pairs than this is estimated from this many, drawn uniformly
# with replacement with numpy.random.default_rng(SEED + its position) (module docstring, "Cost").
MAX_PAIRS = 10_000
SEED = 0
# The hyperparameter label of the summary over every environment.
ALL = "all"
# Targets whose noise is the test accuracy's (Hoeffding over the test examples).
NOISY_TARGETS = ("gap", "test_error")
# The column that tells two models of one trial apart; never coupled.
MODEL_ID = "model_id"

SUMMARY_COLUMNS = ("measure", "hyperparameter", "environments", "kept", "mean", "p90", "max")
ENVIRONMENT_COLUMNS = ("measure", "hyperparameter", "environment", "pairs", "weight", "ess", "sign_error", "kept")


def check_settings(min_weight: float, min_ess: float) -> None:
    """A one-line :class:`AnalysisError` unless 0 ≤ ``min_weight`` < 1 and ``min_ess`` ≥ 1 (both finite)."""
    if not (isinstance(min_weight, (int, float)) and 0.0 <= min_weight < 1.0):
        raise AnalysisError(f"sign_error_min_weight: got {min_weight!r}, allowed: a number in [0, 1)")
    if not (isinstance(min_ess, (int, float)) and math.isfinite(min_ess) and min_ess >= 1.0):
        raise AnalysisError(f"sign_error_min_ess: got {min_ess!r}, allowed: a number of at least 1")


def sign_error(c1, c2, g1, g2):
    """The paper's sign-error loss of one coupled pair (or arrays of pairs):
    ``(1 − sgn(c2 − c1) · sgn(g2 − g1)) / 2``: 0 when the measure c orders the pair as the
    target g does, 1 when the other way, ½ when either difference is zero."""
    product = np.sign(np.subtract(c2, c1, dtype=float)) * np.sign(np.subtract(g2, g1, dtype=float))
    return (1.0 - product) / 2.0


def hoeffding_weight(difference, test_examples: int):
    """``max(0, 1 − 2 exp(−2 n (d/2)²))²`` for targets differing by ``d`` (absolute value taken),
    each estimated on ``n = test_examples`` examples: a lower bound (Hoeffding's inequality,
    applied to both models) on the probability that the observed order of the two targets is
    their true order. 0 at d = 0; 0.5 at d ≈ 0.0694 for n = 797, at d ≈ 0.0196 for n = 10,000."""
    d = np.abs(np.asarray(difference, dtype=float))
    phi = 2.0 * np.exp(-2.0 * test_examples * (d / 2.0) ** 2)
    return np.maximum(0.0, 1.0 - phi) ** 2


def pair_weight(difference, test_examples: Optional[int], min_weight: float = MIN_WEIGHT):
    """The weight of a coupled pair in its environment: ``(hoeffding_weight − min_weight)₊``
    (the paper's filter: pairs whose order may be test-set noise are left out, weight 0), or 1
    for every pair when ``test_examples`` is None (no noise model: nothing filtered)."""
    d = np.asarray(difference, dtype=float)
    if test_examples is None:
        return np.ones_like(d)
    return np.maximum(hoeffding_weight(d, test_examples) - min_weight, 0.0)


def _sorted_values(values: pd.Series) -> List[object]:
    unique = list(pd.unique(values))
    try:
        return sorted(unique)
    except TypeError:
        return sorted(unique, key=str)


def _text(value: object) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    return f"{value:g}" if isinstance(value, float) else str(value)


def coupled_pairs(models: pd.DataFrame, axes: Sequence[str],
                  max_pairs: int = MAX_PAIRS) -> Tuple[pd.DataFrame, pd.DataFrame]:
    """(environments, pairs) of a zoo: ``models`` has one row per model (any index) with the
    grid-axis columns ``axes`` (and ``model_id``, whose values are never coupled).

    ``environments``: one row per unordered pair of configurations differing in exactly one
    axis, in a fixed order (axes in the given order, then the other axes' values, then the two
    values of the axis, sorted): ``hyperparameter``, ``first`` and ``second`` (the axis's two
    values), ``environment`` (readable: ``width 16 → 32 | depth=3, ...``). ``pairs``: one row
    per coupled pair of models, every model of the first configuration against every model of
    the second (``max_pairs`` of them drawn uniformly when there are more: the module's "Cost"):
    ``environment`` (row position in ``environments``), ``first`` and ``second`` (row positions
    in ``models``)."""
    fixed = [MODEL_ID] if MODEL_ID in models.columns and models[MODEL_ID].nunique(dropna=False) > 1 else []
    frame = models[list(axes) + fixed].reset_index(drop=True)
    env_rows: List[Dict[str, object]] = []
    firsts: List[np.ndarray] = []
    seconds: List[np.ndarray] = []
    env_ids: List[np.ndarray] = []
    for axis in axes:
        others = [a for a in axes if a != axis] + fixed
        order = {value: rank for rank, value in enumerate(_sorted_values(frame[axis]))}
        by = others if len(others) != 1 else others[0]  # one column: scalar keys
        groups = frame.groupby(by, dropna=False, sort=True).groups if others else {(): frame.index}
        for key, index in groups.items():
            key = key if isinstance(key, tuple) else (key,)
            by_value: Dict[object, List[int]] = {}
            for position in index:
                by_value.setdefault(frame.at[position, axis], []).append(int(position))
            values = sorted(by_value, key=lambda v: order[v])
            context = ", ".join(f"{name}={_text(value)}" for name, value in zip(others, key))
            for i, low in enumerate(values):
                for high in values[i + 1:]:
                    a, b = np.array(by_value[low]), np.array(by_value[high])
                    if len(a) * len(b) > max_pairs:
                        rng = np.random.default_rng(SEED + len(env_rows))
                        a, b = a[rng.integers(len(a), size=max_pairs)], b[rng.integers(len(b), size=max_pairs)]
                    else:
                        a, b = np.repeat(a, len(b)), np.tile(b, len(a))
                    env_ids.append(np.full(len(a), len(env_rows)))
                    firsts.append(a)
                    seconds.append(b)
                    env_rows.append({"hyperparameter": axis, "first": low, "second": high,
                                     "environment": f"{axis} {_text(low)} → {_text(high)}"
                                                    + (f" | {context}" if context else "")})
    environments = pd.DataFrame(env_rows, columns=["hyperparameter", "first", "second", "environment"])
    pairs = pd.DataFrame({
        "environment": np.concatenate(env_ids) if env_ids else np.zeros(0, dtype=int),
        "first": np.concatenate(firsts) if firsts else np.zeros(0, dtype=int),
        "second": np.concatenate(seconds) if seconds else np.zeros(0, dtype=int),
    })
    return environments, pairs


def environment_sign_errors(models: pd.DataFrame, measures: pd.DataFrame, target: pd.Series, axes: Sequence[str],
                            test_examples: Optional[int], *, min_weight: float = MIN_WEIGHT,
                            min_ess: float = MIN_ESS, max_pairs: int = MAX_PAIRS) -> pd.DataFrame:
    """ψ_e of every measure in every environment (see the module's definitions): one row per
    (measure, environment), measures in the order of ``measures``' columns, environments in the
    order of :func:`coupled_pairs`. ``models``, ``measures`` and ``target`` share one index
    (one row per model); ``test_examples`` None gives every pair weight 1.

    Columns: ``measure``, ``hyperparameter``, ``environment``, ``pairs`` (coupled pairs of
    models with a finite value of the measure), ``weight`` (Σ v), ``ess`` ((Σ v)² / Σ v², 0 when
    Σ v = 0), ``sign_error`` (ψ_e; NaN when Σ v = 0) and ``kept`` (ESS ≥ ``min_ess`` and Σ v > 0)."""
    environments, pairs = coupled_pairs(models, axes, max_pairs)
    first, second, env = (pairs[c].to_numpy() for c in ("first", "second", "environment"))
    g = target.reindex(models.index).to_numpy(dtype=float)
    weight = pair_weight(g[second] - g[first], test_examples, min_weight)
    n_env = len(environments)
    rows = []
    for name in measures.columns:
        c = measures[name].reindex(models.index).to_numpy(dtype=float)
        valid = np.isfinite(c[first]) & np.isfinite(c[second]) & np.isfinite(g[first]) & np.isfinite(g[second])
        v = np.where(valid, weight, 0.0)
        loss = np.where(valid, sign_error(np.where(valid, c[first], 0.0), np.where(valid, c[second], 0.0),
                                          g[first], g[second]), 0.0)
        total = np.bincount(env, weights=v, minlength=n_env)
        squares = np.bincount(env, weights=v ** 2, minlength=n_env)
        weighted = np.bincount(env, weights=v * loss, minlength=n_env)
        counts = np.bincount(env, weights=valid.astype(float), minlength=n_env).astype(int)
        with np.errstate(invalid="ignore", divide="ignore"):
            psi = np.where(total > 0, weighted / total, np.nan)
            ess = np.where(squares > 0, total ** 2 / squares, 0.0)
        # Kish's ESS of equal weights is their count; the division can land a rounding below it.
        ess = np.where(np.isclose(ess, np.round(ess)), np.round(ess), ess)
        rows.append(pd.DataFrame({
            "measure": name, "hyperparameter": environments["hyperparameter"].to_numpy(),
            "environment": environments["environment"].to_numpy(), "pairs": counts, "weight": total, "ess": ess,
            "sign_error": psi, "kept": (total > 0) & (ess >= min_ess)}))
    if not rows:
        return pd.DataFrame(columns=list(ENVIRONMENT_COLUMNS))
    return pd.concat(rows, ignore_index=True)[list(ENVIRONMENT_COLUMNS)]


def environment_weights(models: pd.DataFrame, target: pd.Series, axes: Sequence[str], test_examples: Optional[int], *,
                        min_weight: float = MIN_WEIGHT, min_ess: float = MIN_ESS) -> pd.DataFrame:
    """What the noise filter leaves of every environment, whatever the measure (every model
    with a finite target): one row per environment of :func:`coupled_pairs` with
    ``hyperparameter``, ``environment``, ``pairs``, ``weight`` (Σ v), ``ess`` and ``kept``."""
    table = environment_sign_errors(models, pd.DataFrame({"": 0.0}, index=models.index), target, axes,
                                    test_examples, min_weight=min_weight, min_ess=min_ess)
    return table.drop(columns=["measure", "sign_error"])


def summarize(environments: pd.DataFrame, hyperparameters: Sequence[str],
              percentile: float = PERCENTILE) -> pd.DataFrame:
    """Per measure (in order of first appearance) and per hyperparameter (``hyperparameters``,
    then ``all``): ``environments`` (how many), ``kept``, and the ``mean``, ``p90`` (the
    ``percentile``-th percentile, numpy's linear interpolation) and ``max`` of ψ_e over the
    kept environments (NaN when none is kept). ``max`` is the robust sign error."""
    rows = []
    for name in pd.unique(environments["measure"]):
        part = environments[environments["measure"] == name]
        for hyperparameter in [*hyperparameters, ALL]:
            chosen = part if hyperparameter == ALL else part[part["hyperparameter"] == hyperparameter]
            values = chosen.loc[chosen["kept"].astype(bool), "sign_error"].to_numpy(dtype=float)
            rows.append({
                "measure": name, "hyperparameter": hyperparameter, "environments": int(len(chosen)),
                "kept": int(len(values)),
                "mean": float(values.mean()) if len(values) else math.nan,
                "p90": float(np.percentile(values, percentile)) if len(values) else math.nan,
                "max": float(values.max()) if len(values) else math.nan,
            })
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def sign_error_table(models: pd.DataFrame, measures: pd.DataFrame, target: pd.Series, axes: Sequence[str],
                     test_examples: Optional[int], *, min_weight: float = MIN_WEIGHT, min_ess: float = MIN_ESS,
                     percentile: float = PERCENTILE) -> Tuple[pd.DataFrame, pd.DataFrame]:
    """(summary, environments): :func:`summarize` of :func:`environment_sign_errors`."""
    check_settings(min_weight, min_ess)
    environments = environment_sign_errors(models, measures, target, axes, test_examples, min_weight=min_weight,
                                           min_ess=min_ess)
    return summarize(environments, axes, percentile), environments


def cdf(values: Sequence[float], grid: Sequence[float]) -> np.ndarray:
    """The empirical cumulative distribution of ``values`` at each point of ``grid``: the share
    of values ≤ the point (the paper's figure of ψ_e over environments)."""
    array = np.sort(np.asarray(values, dtype=float))
    if len(array) == 0:
        return np.full(len(grid), np.nan)
    return np.searchsorted(array, np.asarray(grid, dtype=float), side="right") / len(array)

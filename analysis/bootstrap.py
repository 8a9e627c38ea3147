"""Bootstrap confidence intervals over models for Kendall's τ, the granulated ψ and the
adjusted R² of Table 1 and Table 2, and for the statistics of the comparison with the papers
(:mod:`analysis.against_paper`): Pearson's r, a mean over runs, a difference of two means.

The unit resampled is the model: a bootstrap sample draws n models with replacement from the
n models of the zoo (Efron and Tibshirani 1993, ch. 6 and 13), and the statistic is recomputed
on it. ``scipy.stats.bootstrap`` draws the samples and forms the interval; the statistics
below are written for its ``vectorized=True`` form, which hands over many resamples at once
as rows of model indices.

A resample repeats models. Two copies of one model are not a pair of models: counted as a tie
(0 in the numerator, 1 in the denominator) they would shrink every resampled τ towards 0 by
about 1/n, and the τ of a granulated-Kendall group of 2 to 4 models by far more, so the
interval would miss the estimate. τ* therefore averages over the pairs of distinct models of
the resample, each pair weighted by its number of copies: with c_i the number of copies of
model i and P_ij = sign(x_i − x_j)·sign(y_i − y_j),

    τ* = Σ_{i≠j} c_i c_j P_ij / Σ_{i≠j} c_i c_j,

which is :func:`analysis.kendall.kendall_tau` (τ-a, real ties count 0) when every c_i = 1.
ψ* applies the same rule within each group of :func:`analysis.kendall.granulated_kendall`; a
group with fewer than two distinct models or a constant target is skipped.

Constants: ``N_RESAMPLES`` = 1000 resamples, ``CONFIDENCE`` = 0.95, ``SEED`` = 0 (one
``numpy.random.Generator`` per statistic, so a measure's interval does not depend on which
other measures were analysed), method ``"percentile"``. Percentile rather than BCa: τ and ψ
are bounded, discrete statistics with many ties on small zoos, where BCa's jackknife
acceleration is unstable or undefined (scipy then returns NaN); the percentile interval is
transformation-respecting and always defined when the resamples are.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
from scipy import stats

from analysis.kendall import Concordance

N_RESAMPLES = 1000
CONFIDENCE = 0.95
SEED = 0
METHOD = "percentile"
# Resamples evaluated per call of a vectorized statistic (bounds memory at BATCH × n × n).
BATCH = 250


def _counts(indices: np.ndarray, n: int) -> np.ndarray:
    """Rows of model indices (resamples × n) as rows of copy counts c_i (float)."""
    return _int_counts(indices, n).astype(float)


def _int_counts(indices: np.ndarray, n: int) -> np.ndarray:
    """Rows of model indices (resamples × n) as rows of copy counts c_i (integers)."""
    indices = np.atleast_2d(indices).astype(np.int64)
    rows = indices.shape[0]
    flat = (np.arange(rows, dtype=np.int64)[:, None] * n + indices).ravel()
    return np.bincount(flat, minlength=rows * n).reshape(rows, n)


def _interval(statistic: Callable[[np.ndarray], np.ndarray], n: int, seed: int,
              n_resamples: int, confidence: float) -> Tuple[float, float]:
    """The percentile interval of ``statistic`` (resample index rows -> values) over
    ``n_resamples`` bootstrap samples of the n models; NaN when n < 3 or when any resample's
    statistic is undefined (NaN)."""
    if n < 3:
        return math.nan, math.nan
    with warnings.catch_warnings():
        # A degenerate bootstrap distribution (all resamples equal) is reported by scipy as a
        # warning and an interval of NaN; the caller reads the NaN.
        warnings.simplefilter("ignore")
        result = stats.bootstrap(
            (np.arange(n),), lambda idx, axis=-1: statistic(np.moveaxis(idx, axis, -1)),
            vectorized=True, n_resamples=n_resamples, batch=BATCH, confidence_level=confidence,
            method=METHOD, rng=np.random.default_rng(seed),
        )
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return (low, high) if math.isfinite(low) and math.isfinite(high) else (math.nan, math.nan)


def kendall_tau_ci(x: Sequence[float], y: Sequence[float], *, n_resamples: int = N_RESAMPLES,
                   confidence: float = CONFIDENCE, seed: int = SEED) -> Tuple[float, float]:
    """Percentile bootstrap interval over models of Kendall's τ-a (module docstring)."""
    return _interval(tau_statistic(x, y), len(x), seed, n_resamples, confidence)


def tau_statistic(x: Sequence[float], y: Sequence[float]) -> Callable[[np.ndarray], np.ndarray]:
    """τ* of resamples given as rows of model indices (module docstring). The numerator, an
    integer, is counted in O(n log n) per resample (:class:`analysis.kendall.Concordance`)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    n = len(x)
    concordance = Concordance(x, y)

    def statistic(indices: np.ndarray) -> np.ndarray:
        result = concordance.evaluate(_int_counts(indices, n))
        with np.errstate(invalid="ignore", divide="ignore"):
            return result.sums[:, 0].astype(float) / result.pairs[:, 0].astype(float)

    return statistic


def adjusted_r2_ci(x: Sequence[float], y: Sequence[float], *, n_resamples: int = N_RESAMPLES,
                   confidence: float = CONFIDENCE, seed: int = SEED) -> Tuple[float, float]:
    """Percentile bootstrap interval over models of :func:`adjusted_r2_statistic`."""
    return _interval(adjusted_r2_statistic(x, y), len(x), seed, n_resamples, confidence)


def adjusted_r2_statistic(x: Sequence[float], y: Sequence[float]) -> Callable[[np.ndarray], np.ndarray]:
    """The univariate adjusted R² of
    :func:`analysis.regression.adjusted_r2` (p = 1): R² of a least-squares line with intercept
    is the squared Pearson correlation, R̄² = 1 − (1 − R²)(n − 1)/(n − 2). A resample with a
    constant measure has R² = 0 (the fit is the mean); one with a constant target has none,
    which makes the interval NaN."""
    moments = _weighted_moments(x, y)
    n = len(x)

    def statistic(indices: np.ndarray) -> np.ndarray:
        mx, sxx, syy, sxy = moments(indices)
        with np.errstate(invalid="ignore", divide="ignore"):
            r2 = np.where(sxx > 1e-300 * (1 + np.abs(mx)), sxy * sxy / (sxx * syy), 0.0)
        r2 = np.where(syy > 0, r2, np.nan)
        return 1.0 - (1.0 - r2) * (n - 1) / (n - 2)

    return statistic


# Pearson's r: the largest share of resamples on which r may be undefined (a constant column).
MAX_UNDEFINED = 0.05


def pearson_r_ci(x: Sequence[float], y: Sequence[float], *, n_resamples: int = N_RESAMPLES,
                 confidence: float = CONFIDENCE, seed: int = SEED) -> Tuple[float, float]:
    """Percentile bootstrap interval over models of Pearson's r (the second paper's
    statistic for stability against test accuracy): r* of a resample is the weighted
    correlation with weights c_i / n (a model drawn twice counts twice, unlike τ*, for which
    a pair of copies is no pair).

    Test accuracies of a small zoo tie often (0.975 for three of 8 models on 360 test images),
    so a few resamples of a small zoo draw a constant column, on which r is undefined. Those
    resamples are left out of the percentiles when they are at most ``MAX_UNDEFINED`` = 5% of
    the ``n_resamples`` (drawn here with ``numpy.random.default_rng(seed)``, uniformly with
    replacement, as scipy.stats.bootstrap does); with more, or fewer than 3 models, NaN."""
    n = len(x)
    if n < 3:
        return math.nan, math.nan
    statistic = pearson_statistic(x, y)
    rng = np.random.default_rng(seed)
    values = np.concatenate([statistic(rng.integers(0, n, size=(min(BATCH, n_resamples - start), n)))
                             for start in range(0, n_resamples, BATCH)])
    finite = values[np.isfinite(values)]
    if len(finite) < (1 - MAX_UNDEFINED) * n_resamples:
        return math.nan, math.nan
    alpha = (1 - confidence) / 2
    low, high = np.percentile(finite, [100 * alpha, 100 * (1 - alpha)])
    return float(low), float(high)


def pearson_statistic(x: Sequence[float], y: Sequence[float]) -> Callable[[np.ndarray], np.ndarray]:
    """r* of resamples given as rows of model indices (see :func:`pearson_r_ci`)."""
    moments = _weighted_moments(x, y)

    def statistic(indices: np.ndarray) -> np.ndarray:
        _, sxx, syy, sxy = moments(indices)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where((sxx > 0) & (syy > 0), sxy / np.sqrt(sxx * syy), np.nan)

    return statistic


def _weighted_moments(x: Sequence[float], y: Sequence[float]):
    """``moments(indices)`` of resamples given as rows of model indices: the weighted mean of
    x and the weighted (co)variances sxx, syy, sxy, with weights c_i / n (c_i: how often model
    i is drawn). x and y are centred first, so the moments lose no precision for large offsets."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    n = len(x)
    x = x - x.mean()
    y = y - y.mean()

    def moments(indices: np.ndarray):
        weights = _counts(indices, n) / n
        mx, my = weights @ x, weights @ y
        return mx, weights @ (x * x) - mx * mx, weights @ (y * y) - my * my, weights @ (x * y) - mx * my

    return moments


def mean_ci(values: Sequence[float], *, n_resamples: int = N_RESAMPLES, confidence: float = CONFIDENCE,
            seed: int = SEED) -> Tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (one per run); NaN with fewer
    than 3 values or when every resample has the same mean."""
    values = np.asarray(values, dtype=float)
    n = len(values)

    def statistic(indices: np.ndarray) -> np.ndarray:
        return (_counts(indices, n) / n) @ values

    return _interval(statistic, n, seed, n_resamples, confidence)


def mean_difference_ci(a: Sequence[float], b: Sequence[float], *, n_resamples: int = N_RESAMPLES,
                       confidence: float = CONFIDENCE, seed: int = SEED) -> Tuple[float, float]:
    """Percentile bootstrap interval of mean(a) − mean(b), the two groups resampled
    independently (``scipy.stats.bootstrap`` with two samples); NaN when either group has
    fewer than 3 values or the resampled differences are all equal."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if len(a) < 3 or len(b) < 3:
        return math.nan, math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = stats.bootstrap(
            (a, b), lambda u, v, axis=-1: np.mean(u, axis=axis) - np.mean(v, axis=axis), vectorized=True,
            n_resamples=n_resamples, batch=BATCH, confidence_level=confidence, method=METHOD,
            rng=np.random.default_rng(seed),
        )
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return (low, high) if math.isfinite(low) and math.isfinite(high) else (math.nan, math.nan)


def _group_codes(frame: pd.DataFrame, keys: Sequence[str]) -> np.ndarray:
    if not keys:
        return np.zeros(len(frame), dtype=np.int64)
    return frame.groupby(list(keys), dropna=False, sort=True).ngroup().to_numpy()


def psi_ci(frame: pd.DataFrame, measure_col: str, target_col: str, axes: Sequence[str], *,
           hold_fixed: Sequence[str] = (), n_resamples: int = N_RESAMPLES, confidence: float = CONFIDENCE,
           seed: int = SEED) -> Tuple[float, float]:
    """Percentile bootstrap interval over models of :func:`psi_statistic` (NaN without axes)."""
    data = frame[np.isfinite(frame[measure_col].astype(float)) & np.isfinite(frame[target_col].astype(float))]
    if not list(axes) or len(data) < 3:
        return math.nan, math.nan
    return _interval(psi_statistic(data, measure_col, target_col, axes, hold_fixed=hold_fixed), len(data), seed,
                     n_resamples, confidence)


def psi_statistic(frame: pd.DataFrame, measure_col: str, target_col: str, axes: Sequence[str], *,
                  hold_fixed: Sequence[str] = ()) -> Callable[[np.ndarray], np.ndarray]:
    """ψ* of resamples (rows of indices into the rows of ``frame`` with a finite measure and
    target): the granulated Kendall ψ of
    :func:`analysis.kendall.granulated_kendall`, with its rules on every resample: per axis,
    the groups in which the other axes and ``hold_fixed`` are equal; a group with fewer than
    two distinct resampled models or a constant target is skipped; ψ_i is the mean τ* of the used groups,
    ψ the mean of the defined ψ_i. A resample with no defined ψ_i makes the interval NaN."""
    axes = list(axes)
    data = frame[np.isfinite(frame[measure_col].astype(float)) & np.isfinite(frame[target_col].astype(float))]
    n = len(data)
    x = data[measure_col].to_numpy(dtype=float)
    y = data[target_col].to_numpy(dtype=float)
    per_axis = []
    for axis in axes:
        keys = [a for a in axes if a != axis] + [c for c in hold_fixed if c != axis]
        per_axis.append(Concordance(x, y, groups=_group_codes(data, keys)))  # groups in code order

    def statistic(indices: np.ndarray) -> np.ndarray:
        counts = _int_counts(indices, n)
        psis = []
        for concordance in per_axis:
            # Per group: Σ c_i c_j P_ij, Σ c_i c_j over target-untied pairs, over distinct pairs.
            result = concordance.evaluate(counts)
            total, varied, distinct_pairs = (result.sums.astype(float), result.untied.astype(float),
                                             result.pairs.astype(float))
            used = (distinct_pairs > 0) & (varied > 0)
            with np.errstate(invalid="ignore", divide="ignore"):
                taus = np.where(used, total / np.where(used, distinct_pairs, 1.0), 0.0)
                psis.append(np.where(used.any(axis=1), taus.sum(axis=1) / used.sum(axis=1), np.nan))
        stacked = np.vstack(psis)
        defined = np.isfinite(stacked)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(defined.any(axis=0), np.where(defined, stacked, 0.0).sum(axis=0) / defined.sum(axis=0),
                            np.nan)

    return statistic


def covers(interval: Tuple[float, float], value: float) -> Optional[bool]:
    """Whether ``value`` lies in the closed ``interval``; None when the interval is NaN."""
    low, high = interval
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    return low <= value <= high

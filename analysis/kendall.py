"""Kendall's rank correlation and the granulated Kendall coefficient ψ.

Definitions follow Jiang et al. 2020 ("Fantastic generalization measures and where to find
them") as restated in §5.3 and Appendix A.1.1–A.1.2 of *Robustness to pruning predicts
generalization in deep neural networks* (the "first paper").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Sequence, Tuple

import numpy as np
import pandas as pd

from analysis.errors import AnalysisError

# Rows of the pairwise sign matrix computed at once: bounds memory at about
# _PAIR_BLOCK_ELEMENTS bytes per temporary for large zoos while staying vectorized.
_PAIR_BLOCK_ELEMENTS = 4_000_000


def as_finite_vector(values: Sequence[float] | np.ndarray | pd.Series, name: str) -> np.ndarray:
    """``values`` as a 1-d float array; a one-line :class:`AnalysisError` if any is not finite."""
    array = np.asarray(values, dtype=float)
    if array.ndim != 1:
        raise AnalysisError(f"{name}: expected a 1-d sequence of numbers, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise AnalysisError(f"{name}: every value must be finite (got NaN or inf)")
    return array


def pair_signs(values: np.ndarray, rows: slice) -> np.ndarray:
    """sign(values[i] − values[j]) as int8 for i in ``rows`` and every j (0 for a tie).

    Comparisons rather than a subtraction, so that huge finite values cannot overflow.
    """
    left = values[rows, None]
    right = values[None, :]
    return (left > right).astype(np.int8) - (left < right).astype(np.int8)


def row_blocks(n: int) -> list:
    """Slices of rows such that a block of ``rows × n`` pairs stays small."""
    step = max(1, _PAIR_BLOCK_ELEMENTS // max(n, 1))
    return [slice(start, min(start + step, n)) for start in range(0, n, step)]


def kendall_tau(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Kendall's τ as defined by Jiang et al. 2020 (first paper, Appendix A.1.1):

        τ = 1 / (n (n − 1)) · Σ_i Σ_{j ≠ i} sign(x_i − x_j) · sign(y_i − y_j),

    the mean over all ordered pairs of distinct models, which equals the mean over the
    n(n − 1)/2 unordered pairs: (concordant − discordant) / (n(n − 1)/2), i.e. the τ-a form.
    A pair tied in x or in y has sign 0 and counts 0 (it stays in the denominator). Without
    ties this equals ``scipy.stats.kendalltau`` (τ-b); with ties it is smaller in absolute value
    than τ-b, which divides by the number of untied pairs instead.

    Needs at least two models and finite values; O(n²) time, memory bounded by row blocks.
    """
    x = as_finite_vector(x, "x")
    y = as_finite_vector(y, "y")
    if len(x) != len(y):
        raise AnalysisError(f"x, y: lengths differ ({len(x)} vs {len(y)})")
    n = len(x)
    if n < 2:
        raise AnalysisError(f"x: Kendall's tau needs at least 2 models, got {n}")
    total = 0
    for rows in row_blocks(n):
        total += int(np.sum(pair_signs(x, rows).astype(np.int64) * pair_signs(y, rows)))
    # Ordered pairs count each unordered pair twice; the diagonal contributes 0.
    return total / (n * (n - 1))


def kendall_tau_se(n: int) -> float:
    """Standard error of Kendall's τ under the null hypothesis of independence, no ties:

        s_τ = sqrt( 2 (2n + 5) / (9 n (n − 1)) )

    (Kendall 1938; the variance of the τ statistic for n independent continuous pairs).
    For n = 324 this gives 0.037, the s_τ the first paper reports under its Table 1, so it is
    the formula the paper used. It is the null standard error: read it as "how large a τ is
    distinguishable from chance", not as a confidence interval around a large τ.
    """
    if n < 2:
        raise AnalysisError(f"n: the standard error of tau needs at least 2 models, got {n}")
    return math.sqrt(2.0 * (2 * n + 5) / (9.0 * n * (n - 1)))


@dataclass(frozen=True)
class GranulatedKendall:
    """Result of :func:`granulated_kendall`.

    ``per_axis[a]`` is ψ_a (NaN when no group of axis ``a`` was usable), ``groups_used[a]`` and
    ``groups_skipped[a]`` count the groups of that axis, and ``psi`` is the mean of the finite
    ψ_a (NaN when there is none).
    """

    per_axis: Dict[str, float]
    groups_used: Dict[str, int]
    groups_skipped: Dict[str, int]
    psi: float


def granulated_kendall(
    df: pd.DataFrame,
    measure_col: str,
    target_col: str,
    axes: Sequence[str],
    *,
    hold_fixed: Sequence[str] = (),
) -> GranulatedKendall:
    """Granulated Kendall coefficient (Jiang et al. 2020; first paper Appendix A.1.2).

    For each hyperparameter axis i, the models are split into groups in which every other
    axis (and every column of ``hold_fixed``) takes one value, so that within a group only
    θ_i varies; τ is computed in each group (:func:`kendall_tau`) and

        ψ_i = mean of τ over the usable groups,      ψ = (1/n) Σ_i ψ_i.

    The paper's m_i (the number of combinations of the other axes) is the number of groups on
    a full grid; here a group with fewer than two models or with a constant target (no
    ordering to predict) is skipped and counted instead, so incomplete grids (diverged or
    failed trials) still give a value. ψ averages the axes with at least one usable group.

    ``hold_fixed`` names columns that are not axes of ψ but must be equal within a group —
    by default genzoo passes the ``seed`` column here, so replicate seeds form separate groups
    and each group varies exactly one hyperparameter (the first paper's Table 2 has no seed
    column). Missing values (``None``/NaN) of an axis form their own level. Rows whose measure
    or target is not finite are dropped first.
    """
    axes = list(axes)
    missing = [c for c in [measure_col, target_col, *axes, *hold_fixed] if c not in df.columns]
    if missing:
        raise AnalysisError(f"df: missing column(s) {', '.join(map(str, missing))}")
    data = df[np.isfinite(df[measure_col].astype(float)) & np.isfinite(df[target_col].astype(float))]
    per_axis: Dict[str, float] = {}
    used: Dict[str, int] = {}
    skipped: Dict[str, int] = {}
    for axis in axes:
        keys = [a for a in axes if a != axis] + [c for c in hold_fixed if c != axis]
        taus, n_skipped = _group_taus(data, measure_col, target_col, keys)
        per_axis[axis] = float(np.mean(taus)) if taus else float("nan")
        used[axis] = len(taus)
        skipped[axis] = n_skipped
    finite = [v for v in per_axis.values() if math.isfinite(v)]
    psi = float(np.mean(finite)) if finite else float("nan")
    return GranulatedKendall(per_axis=per_axis, groups_used=used, groups_skipped=skipped, psi=psi)


def _group_taus(data: pd.DataFrame, measure_col: str, target_col: str, keys: list) -> Tuple[list, int]:
    if keys:
        groups = [g for _, g in data.groupby(keys, dropna=False, sort=True)]
    else:
        groups = [data]
    taus = []
    n_skipped = 0
    for group in groups:
        target = group[target_col].to_numpy(dtype=float)
        if len(group) < 2 or np.all(target == target[0]):
            n_skipped += 1
            continue
        taus.append(kendall_tau(group[measure_col].to_numpy(dtype=float), target))
    return taus, n_skipped

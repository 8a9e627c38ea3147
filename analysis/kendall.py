"""Kendall's rank correlation and the granulated Kendall coefficient ψ.

Definitions follow Jiang et al. 2020 ("Fantastic generalization measures and where to find
them") as restated in §5.3 and Appendix A.1.1–A.1.2 of *Robustness to pruning predicts
generalization in deep neural networks* (the "first paper").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from analysis.errors import AnalysisError

# Rows of the pairwise sign matrix computed at once: bounds memory at about
# _PAIR_BLOCK_ELEMENTS bytes per temporary for large zoos while staying vectorized.
_PAIR_BLOCK_ELEMENTS = 4_000_000
# Weight rows processed at once by Concordance.dominated: rows × models at most this.
_ROW_BLOCK_ELEMENTS = 1 << 18


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

    Needs at least two models and finite values. The sum is counted in O(n log n)
    (:class:`Concordance`), exactly: it is an integer.
    """
    x = as_finite_vector(x, "x")
    y = as_finite_vector(y, "y")
    if len(x) != len(y):
        raise AnalysisError(f"x, y: lengths differ ({len(x)} vs {len(y)})")
    n = len(x)
    if n < 2:
        raise AnalysisError(f"x: Kendall's tau needs at least 2 models, got {n}")
    total = int(Concordance(x, y).sums(np.ones((1, n), dtype=np.int64))[0, 0])
    # Ordered pairs count each unordered pair twice; the diagonal contributes 0.
    return total / (n * (n - 1))


def _codes(values: np.ndarray) -> Tuple[np.ndarray, int]:
    """Dense ranks of ``values`` (equal values share one) and how many there are."""
    uniques, inverse = np.unique(values, return_inverse=True)
    return inverse.reshape(-1).astype(np.int64), len(uniques)


def _starts(*keys: np.ndarray) -> np.ndarray:
    """Positions where any of the (sorted together) ``keys`` changes, the first included."""
    n = len(keys[0])
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    change = np.zeros(n, dtype=bool)
    change[0] = True
    for key in keys:
        change[1:] |= key[1:] != key[:-1]
    return np.flatnonzero(change)


def _by_group(values: np.ndarray, class_group: np.ndarray, groups: int) -> np.ndarray:
    """(m × groups): the columns of ``values`` (m × classes, classes ascending by group)
    added up by group."""
    out = np.zeros((values.shape[0], groups), dtype=np.int64)
    if values.shape[1]:
        starts = _starts(class_group)
        out[:, class_group[starts]] = np.add.reduceat(values, starts, axis=1)
    return out


class ConcordanceSums(NamedTuple):
    """Per weight row and group (m × groups): the signed sum S, Σ w_i w_j over target-untied
    pairs, Σ w_i w_j over pairs of distinct models."""

    sums: np.ndarray
    untied: np.ndarray
    pairs: np.ndarray


class Concordance:
    """Sums of sign(x_i − x_j)·sign(y_i − y_j) over ordered pairs of models in the same group,
    each pair weighted w_i·w_j, for any number of weight rows at once: O(n log n) per row, where
    the pairwise form is O(n²).

    With P = Σ w_i w_j [x_j < x_i][y_j < y_i] (strict dominance), A = Σ w_i w_j [x_j < x_i] and
    B = Σ w_i w_j [x_j < x_i][y_j = y_i] (all within a group), the signed sum is
    S = 2 (2P − A + B): the pairs ordered in x count +1 when y agrees, −1 when it disagrees and
    0 when y ties, and each unordered pair appears in both orders. With W the weight of a
    group, A = (W² − Σ_x-ties (Σ w)²) / 2 and B = (Σ_y-ties (Σ w)² − Σ_(x,y)-ties (Σ w)²) / 2
    come from class sums; P from a binary trie over the ranks of x within each group: at each
    level, in each node, every model of the upper half gets the weight of the lower half's
    models with a smaller y (a cumulative sum in y order), so every pair ordered in x is
    counted once, at the level where their ranks part. The geometry is built once, with the
    models sorted by (group, x, y) so that groups and ties are contiguous; :meth:`evaluate`
    takes m rows of weights (m × n integers: ones for τ, the copy counts of m bootstrap
    resamples for τ* and ψ*), so every count is exact.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, groups: Optional[np.ndarray] = None):
        x = np.asarray(x, dtype=float)
        y_all = _codes(np.asarray(y, dtype=float))[0]
        n = len(x)
        group_all = np.zeros(n, dtype=np.int64) if groups is None else _codes(np.asarray(groups))[0]
        self.n = n
        self.perm = np.lexsort((y_all, x, group_all))
        group, xs, y_codes = group_all[self.perm], x[self.perm], y_all[self.perm]
        self.group_starts = _starts(group)
        self.group_count = len(self.group_starts)
        self.x_starts = _starts(group, xs)
        self.xy_starts = _starts(group, xs, y_codes)
        self.x_singletons = len(self.x_starts) == n
        self.xy_singletons = len(self.xy_starts) == n
        self.x_group = group[self.x_starts]
        self.xy_group = group[self.xy_starts]
        self.y_order = np.lexsort((y_codes, group))
        self.y_starts = _starts(group[self.y_order], y_codes[self.y_order])
        self.y_singletons = len(self.y_starts) == n
        self.y_group = group[self.y_order][self.y_starts]
        # x as its rank among the distinct values of its group: the trie is as deep as the
        # largest group needs (a few levels for the groups of granulated Kendall).
        x_class = np.cumsum(np.isin(np.arange(n), self.x_starts)) - 1
        x_codes = x_class - x_class[self.group_starts][np.searchsorted(self.group_starts, np.arange(n), "right") - 1]
        self._codes_sorted = (group, x_codes, y_codes)
        levels = max(1, int(x_codes.max(initial=0)).bit_length())
        self.levels = []
        for bit in range(levels):
            node = group * (1 << (levels - bit)) + (x_codes >> (bit + 1))
            order = np.lexsort((y_codes, node))
            upper_sorted = ((x_codes >> bit) & 1)[order] == 1
            if not upper_sorted.any() or upper_sorted.all():
                continue
            node_sorted, y_sorted = node[order], y_codes[order]
            position = np.arange(n)
            node_start = np.maximum.accumulate(np.where(np.isin(position, _starts(node_sorted)), position, 0))
            tie_start = np.maximum.accumulate(np.where(np.isin(position, _starts(node_sorted, y_sorted)), position, 0))
            # Lower models before each position, so that a cumulative sum over the lower
            # models alone (a zero column first) answers "weight below, in this node, smaller y".
            lower_before = np.r_[0, np.cumsum(~upper_sorted)][:-1]
            upper = np.flatnonzero(upper_sorted)
            upper_groups = group[order[upper]]
            group_starts = _starts(upper_groups)
            self.levels.append((order[~upper_sorted], order[upper], lower_before[tie_start[upper]],
                                lower_before[node_start[upper]], upper_groups[group_starts], group_starts))

    def _sorted(self, weights: np.ndarray) -> np.ndarray:
        return np.take(np.asarray(weights), self.perm, axis=1)

    def _dominated(self, weights: np.ndarray) -> np.ndarray:
        """(m × groups): P = Σ w_i w_j over the pairs of a group with x_j < x_i and y_j < y_i
        (weights already in the sorted order)."""
        out = np.zeros((weights.shape[0], self.group_count), dtype=np.int64)
        # 32-bit arithmetic where no partial sum can exceed it (less memory traffic), along
        # the contiguous axis (a cumulative sum along it is ten times faster).
        largest = int(weights.max(initial=0))
        small = np.int32 if largest * largest * max(self.n, 1) < 2 ** 31 else np.int64
        weights = np.ascontiguousarray(weights, dtype=small)
        # A few rows at a time, so that the temporaries stay in the processor's caches.
        step = max(1, _ROW_BLOCK_ELEMENTS // max(self.n, 1))
        for first in range(0, weights.shape[0], step):
            block = weights[first:first + step]
            zero = np.zeros((block.shape[0], 1), dtype=small)
            for lower, upper, tie, start, labels, group_starts in self.levels:
                below = np.concatenate([zero, np.cumsum(np.take(block, lower, axis=1), axis=1, dtype=small)], axis=1)
                contribution = np.take(block, upper, axis=1) * (np.take(below, tie, axis=1)
                                                                - np.take(below, start, axis=1))
                out[first:first + step, labels] += np.add.reduceat(contribution, group_starts, axis=1, dtype=np.int64)
        return out

    def evaluate(self, weights: np.ndarray) -> ConcordanceSums:
        """S, the target-untied pair weight and the distinct pair weight of every group, for
        each row of ``weights`` (m × n, in the models' order)."""
        w = self._sorted(weights).astype(np.int64)
        total = np.add.reduceat(w, self.group_starts, axis=1) if self.n else np.zeros((w.shape[0], 0), np.int64)
        squares = np.add.reduceat(w * w, self.group_starts, axis=1) if self.n else total
        total2 = total * total

        def square_sums(starts, singletons, class_group, values):
            if singletons:
                return squares
            sums = np.add.reduceat(values, starts, axis=1)
            return _by_group(sums * sums, class_group, self.group_count)

        x_squares = square_sums(self.x_starts, self.x_singletons, self.x_group, w)
        xy_squares = square_sums(self.xy_starts, self.xy_singletons, self.xy_group, w)
        y_squares = squares if self.y_singletons else square_sums(
            self.y_starts, False, self.y_group, np.take(w, self.y_order, axis=1))
        a = (total2 - x_squares) // 2
        b = (y_squares - xy_squares) // 2
        p = self._dominated(w)
        return ConcordanceSums(sums=2 * (2 * p - a + b), untied=total2 - y_squares, pairs=total2 - squares)

    def sums(self, weights: np.ndarray) -> np.ndarray:
        """(m × groups): S = Σ_{i,j in a group} w_i w_j sign(x_i − x_j) sign(y_i − y_j), groups
        in the order of their codes."""
        return self.evaluate(weights).sums

    def pairs(self, weights: np.ndarray) -> np.ndarray:
        """(m × groups): Σ_{i≠j in a group} w_i w_j = (Σ w)² − Σ w²."""
        return self.evaluate(weights).pairs

    def untied(self, weights: np.ndarray) -> np.ndarray:
        """(m × groups): Σ_{i,j in a group} w_i w_j [y_i ≠ y_j]."""
        return self.evaluate(weights).untied

    def cross(self, codes: np.ndarray, count: int) -> np.ndarray:
        """(count × count): entry (a, b) counts the pairs (i, j) of a group with codes[i] = a,
        codes[j] = b, x_j < x_i and y_j < y_i (codes: integers in [0, count)). O(count · n log n):
        the rows of a one-hot matrix of the codes are the weights of j, and the counts each model
        i of an upper half receives are added up by its own code."""
        from scipy import sparse

        codes = np.asarray(codes, dtype=np.int64)[self.perm]
        out = np.zeros((count, count), dtype=np.int64)
        step = max(1, _ROW_BLOCK_ELEMENTS // max(self.n, 1))
        for first in range(0, count, step):
            rows = np.arange(first, min(first + step, count))
            block = (codes[None, :] == rows[:, None]).astype(np.int32)  # one-hot of the j side
            zero = np.zeros((len(rows), 1), dtype=np.int32)
            for lower, upper, tie, start, _, _ in self.levels:
                below = np.concatenate([zero, np.cumsum(np.take(block, lower, axis=1), axis=1, dtype=np.int32)], axis=1)
                counts = np.take(below, tie, axis=1) - np.take(below, start, axis=1)  # (rows × upper)
                onehot = sparse.csr_matrix((np.ones(len(upper), dtype=np.int64), (np.arange(len(upper)), codes[upper])),
                                           shape=(len(upper), count))
                out[:, rows] += np.asarray((onehot.T @ counts.T.astype(np.int64)))
        return out

    @property
    def group_sizes(self) -> np.ndarray:
        return np.diff(np.r_[self.group_starts, self.n])


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
    """τ of every usable group (in the order of the groups' keys) and the number skipped; all
    groups at once (:class:`Concordance` with the groups), each τ exactly
    :func:`kendall_tau` of its group."""
    n = len(data)
    if n == 0:
        return [], 0 if keys else 1
    codes = (data.groupby(keys, dropna=False, sort=True).ngroup().to_numpy() if keys
             else np.zeros(n, dtype=np.int64))
    concordance = Concordance(data[measure_col].to_numpy(dtype=float), data[target_col].to_numpy(dtype=float),
                              groups=codes)
    result = concordance.evaluate(np.ones((1, n), dtype=np.int64))
    sums, untied = result.sums[0], result.untied[0]
    sizes = concordance.group_sizes
    usable = (sizes >= 2) & (untied > 0)  # two models at least, a target that varies
    taus = [int(sums[g]) / (int(sizes[g]) * (int(sizes[g]) - 1)) for g in np.flatnonzero(usable)]
    return taus, int(len(sizes) - usable.sum())

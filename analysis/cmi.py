"""Conditional mutual information between the orderings of a measure and of the target.

Jiang et al. 2020 ("Fantastic generalization measures and where to find them", conditional
independence test), restated in Appendix A.1.3 of the first paper: for a pair of models
(θ1, θ2) let
V_μ = sign(μ(θ1) − μ(θ2)) and V_g = sign(g(θ1) − g(θ2)); U_S is the pair's values of the
hyperparameters in S. The normalized conditional mutual information is

    Î(V_μ; V_g | U_S) = I(V_μ; V_g | U_S) / H(V_g | U_S)

and K(μ) = min over conditioning sets S with |S| ≤ 2 of Î. With two measures in place of
measure and target it gives the first paper's Table 3.

Two variants:

- ``"jiang"`` (default) — the definition above, probabilities estimated by counting pairs.
- ``"pgdl"`` — the scoring program of the PGDL competition (NeurIPS 2020), reproduced
  exactly on full grids; on incomplete grids, where the original's result depends on the
  order of the hyperparameters, genzoo's does not (see :func:`conditional_mutual_information`).
"""

from __future__ import annotations

import itertools
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from analysis.errors import AnalysisError
from analysis.kendall import Concordance, row_blocks

VARIANTS = ("jiang", "pgdl")
# PGDL's entropy adds this inside the logarithm (``np.log2(p + 1e-12)``); kept for exactness.
PGDL_LOG_EPSILON = 1e-12
# Largest number of (cell, V_g, V_μ) bins counted with a dense histogram.
_DENSE_BINS = 1 << 21


def conditional_mutual_information(
    df: pd.DataFrame,
    measure_col: str,
    target_col: str,
    axes: Sequence[str],
    variant: str = "jiang",
) -> float:
    """K(μ): the minimum over conditioning sets of the normalized conditional MI (see module).

    ``df`` has one row per model with the measure, the target and the hyperparameter columns
    ``axes``; rows with a non-finite measure or target are dropped. The conditioning variable of
    a pair of models (i, j) is the ordered tuple (h_i, h_j) for every h in S — the cell of the
    PGDL scoring program (for S = {h1, h2}: (h1_i, h1_j, h2_i, h2_j)). Missing hyperparameter
    values (None/NaN) form their own level.

    ``variant="jiang"``:
      - Pairs: all ordered pairs of distinct models, i.e. every unordered pair once in each
        orientation. A sign needs an orientation; taking both makes the estimate symmetric and
        independent of the row order, and V_g is exactly balanced when S = ∅.
      - Ties: a pair tied in the target has no V_g ∈ {+1, −1} and is left out; a pair tied in
        the measure keeps V_μ = 0 as a third outcome (the measure fails to order it, which is
        information, not an excuse).
      - Sets: every S ⊆ axes with |S| ∈ {0, 1, 2}; p(U_S) weights the cells by their pair counts
        and logarithms are base 2 (the base cancels in the ratio).
      - A set with H(V_g | U_S) = 0 (every cell holds pairs of one gap sign, e.g. one pair per
        cell when S fixes the whole grid) cannot separate dependence from independence and is
        skipped; if every set is skipped the result is NaN.
      - Î(target; target) = 1 and 0 ≤ Î ≤ 1.

    ``variant="pgdl"`` (the PGDL organizers' ``conditional_mutual_information``):
      - All ordered pairs including each model with itself; V = "+" only when strictly greater,
        so a tie (and the self-pair) counts as "−".
      - Sets: exactly two hyperparameters, every ordered pair (h1, h2) of distinct axes.
      - Per cell: plug-in mutual information in bits, Σ p(v_g, v_μ) log2(p(v_g, v_μ) /
        (p(v_g) p(v_μ))) over non-zero joint cells, and entropy of V_g
        −Σ p log2(p + 1e-12).
      - Score of a set = (unweighted mean over cells of MI) / (unweighted mean over cells of the
        entropy); K = minimum over the sets.
      - Incomplete grids. The original's cells are all value combinations of the two
        hyperparameters, so on a full grid every cell holds pairs. On an incomplete grid (some
        combination of the two hyperparameters' values has no model) a cell is empty, its
        probabilities are 0/0, and the score of that set is NaN — that set's only (and of its
        mirror (h2, h1), which has the same cells), not the program's. The original then takes
        the minimum as ``min_mi = min(mi, min_mi)``, starting from inf, over the sets in the
        order of the hyperparameter names; Python's ``min`` keeps its first argument unless the
        second is smaller, and nothing is smaller than NaN or than a number when compared with
        NaN, so a NaN score replaces the running minimum and the next score replaces the NaN.
        Its result is therefore the minimum over the sets *after* the last NaN-scoring set
        (the sets before it are lost), and NaN when the last set scores NaN: it depends on the
        order in which the hyperparameters are listed.
      - genzoo's choice: an empty cell is left out of both means (a set is scored on its
        non-empty cells; it is NaN only when the mean entropy is 0), and K is the minimum over
        the sets with a finite score, whatever their order. On a full grid this is the
        original's value exactly; on an incomplete grid it is order-independent where the
        original is not.
      - Needs at least two axes, else NaN. A −0.0 result is returned as 0.0.
    """
    if variant not in VARIANTS:
        raise AnalysisError(f"variant: got {variant!r}, allowed: {', '.join(VARIANTS)}")
    scores = cmi_by_set(df, measure_col, target_col, axes, variant=variant)
    finite = [v for v in scores.values() if np.isfinite(v)]
    if not finite:
        return float("nan")
    return float(min(finite)) + 0.0


def cmi_by_set(
    df: pd.DataFrame,
    measure_col: str,
    target_col: str,
    axes: Sequence[str],
    variant: str = "jiang",
) -> Dict[Tuple[str, ...], float]:
    """The normalized CMI of every conditioning set (see
    :func:`conditional_mutual_information`); NaN marks a skipped set."""
    if variant not in VARIANTS:
        raise AnalysisError(f"variant: got {variant!r}, allowed: {', '.join(VARIANTS)}")
    axes = list(axes)
    missing = [c for c in [measure_col, target_col, *axes] if c not in df.columns]
    if missing:
        raise AnalysisError(f"df: missing column(s) {', '.join(map(str, missing))}")
    mu = df[measure_col].to_numpy(dtype=float)
    g = df[target_col].to_numpy(dtype=float)
    keep = np.isfinite(mu) & np.isfinite(g)
    data = df[keep]
    mu, g = mu[keep], g[keep]
    if len(data) < 2:
        raise AnalysisError(f"df: conditional mutual information needs at least 2 models, got {len(data)}")
    levels = {a: _level_codes(data[a]) for a in axes}
    if variant == "jiang":
        sets = [s for r in (0, 1, 2) for s in itertools.combinations(axes, r)]
    else:
        sets = list(itertools.permutations(axes, 2))
    counts = _PairCounts.of(mu, g)
    scores: Dict[Tuple[str, ...], float] = {}
    for subset in sets:
        table = counts.table(tuple(subset), [levels[a] for a in subset], variant)
        scores[tuple(subset)] = _jiang_score(table) if variant == "jiang" else _pgdl_score(table)
    return scores


def _counted_by_cell(n: int, cells: int) -> bool:
    """Whether pairs are counted cell by cell, O(cells · n log n) (:class:`_PairCounts`),
    rather than pair by pair, O(n²) (:func:`_pair_table`): when there are few cells per model."""
    return cells * 4 * max(1, n.bit_length()) < n


class _PairCounts:
    """Counts of ordered pairs of models by conditioning cell and by the signs of the target
    and measure differences, from four :class:`analysis.kendall.Concordance` geometries built
    once per (measure, target) and reused for every conditioning set. For cell codes a of the
    models (K values), each K × K matrix below has entry (a, b) over the pairs (i, j) with i in
    a and j in b: g_i > g_j; g_i > g_j and μ_i > μ_j; g_i > g_j and μ_i = μ_j; μ_i > μ_j. The
    pairs with g_i < g_j are those of cell (b, a) with i and j exchanged. Every count is the
    same integer :func:`_pair_table` counts pair by pair, so the scores are the same numbers."""

    # The last (measure, target) counted: Table 1 asks for both variants of the same models.
    _last: Optional["_PairCounts"] = None

    def __init__(self, mu: np.ndarray, g: np.ndarray):
        self.mu, self.g, self.n = mu, g, len(mu)
        self._geometry = None
        self._matrices: Dict[Tuple, np.ndarray] = {}

    @classmethod
    def of(cls, mu: np.ndarray, g: np.ndarray) -> "_PairCounts":
        last = cls._last
        if last is None or not (np.array_equal(last.mu, mu) and np.array_equal(last.g, g)):
            cls._last = last = cls(mu.copy(), g.copy())
        return last

    def _cross(self, which: int, names: Tuple[str, ...], levels, cells: int) -> np.ndarray:
        """Matrix ``which`` for the cells of ``names`` (in that order), counted once per set of
        axes: another order of the same axes is a permutation of its rows and columns."""
        order = sorted(range(len(names)), key=lambda i: names[i])
        key = (which, tuple(names[i] for i in order))
        if key not in self._matrices:
            codes = np.zeros(self.n, dtype=np.int64)
            for i in order:
                codes = codes * levels[i][1] + levels[i][0]
            self._matrices[key] = self._built()[which].cross(codes, cells)
        matrix = self._matrices[key]
        if order == sorted(order):
            return matrix
        # The cell code in the asked order -> the code in sorted order (two axes at most).
        ks = [k for _, k in levels]
        asked = np.arange(cells)
        digits = [(asked // int(np.prod(ks[i + 1:], dtype=np.int64))) % ks[i] for i in range(len(ks))]
        sorted_code = np.zeros(cells, dtype=np.int64)
        for i in order:
            sorted_code = sorted_code * ks[i] + digits[i]
        return matrix[np.ix_(sorted_code, sorted_code)]

    def _built(self):
        if self._geometry is None:
            mu_ties = np.unique(self.mu, return_inverse=True)[1].reshape(-1)
            # g_i > g_j; g_i > g_j and μ_i > μ_j; g_i > g_j among equal μ; μ_i > μ_j.
            self._geometry = (Concordance(self.g, self.g), Concordance(self.g, self.mu),
                              Concordance(self.g, self.g, groups=mu_ties), Concordance(self.mu, self.mu))
        return self._geometry

    def table(self, names: Tuple[str, ...], levels: List[Tuple[np.ndarray, int]], variant: str) -> np.ndarray:
        """The table of :func:`_pair_table` for the conditioning set ``names`` (with their
        level codes), cells in its order."""
        cells = int(np.prod([k for _, k in levels], dtype=np.int64))
        if not _counted_by_cell(self.n, cells):
            return _pair_table(self.mu, self.g, levels, variant)
        g_gt = self._cross(0, names, levels, cells)
        gm_gt = self._cross(1, names, levels, cells)
        if variant == "jiang":
            gm_eq = self._cross(2, names, levels, cells)
            plus = np.stack([g_gt - gm_gt - gm_eq, gm_eq, gm_gt], axis=-1)  # V_g = +; V_μ = −, tie, +
            minus = plus.transpose(1, 0, 2)[:, :, ::-1]  # V_g = −: cell (b, a), i and j exchanged
            full = np.stack([minus, plus], axis=2)  # (a, b, V_g, V_μ)
            present = full.sum(axis=(2, 3)) > 0
        else:
            m_gt = self._cross(3, names, levels, cells)
            codes = np.zeros(self.n, dtype=np.int64)
            for level_codes, k in levels:
                codes = codes * k + level_codes
            sizes = np.bincount(codes, minlength=cells)
            pairs = np.outer(sizes, sizes)  # every ordered pair, each model with itself included
            full = np.stack([np.stack([pairs - g_gt - m_gt + gm_gt, m_gt - gm_gt], axis=-1),
                             np.stack([g_gt - gm_gt, gm_gt], axis=-1)], axis=2)
            present = pairs > 0
        # The cells in the order of _pair_table's keys: per axis (its code of i, its code of j).
        a, b = np.nonzero(present)
        key = np.zeros(len(a), dtype=np.int64)
        rest_a, rest_b = a.copy(), b.copy()
        digits = []
        for _, k in reversed(levels):
            digits.append((rest_a % k, rest_b % k, k))
            rest_a, rest_b = rest_a // k, rest_b // k
        for code_a, code_b, k in reversed(digits):
            key = (key * k + code_a) * k + code_b
        order = np.argsort(key, kind="stable")
        return full[a[order], b[order]]


def _level_codes(column: pd.Series) -> Tuple[np.ndarray, int]:
    # Codes only label cells, so their order does not matter; NaN/None get a code of their own.
    codes, uniques = pd.factorize(column, use_na_sentinel=False)
    return codes.astype(np.int64), max(len(uniques), 1)


def _pair_table(mu: np.ndarray, g: np.ndarray, levels: List[Tuple[np.ndarray, int]], variant: str) -> np.ndarray:
    """Pair counts as an array (cells, V_g, V_μ) over the non-empty cells.

    ``jiang``: V_g ∈ {0: −, 1: +}, V_μ ∈ {0: −, 1: tie, 2: +}, target ties and self-pairs
    dropped. ``pgdl``: V_g, V_μ ∈ {0: − or tie, 1: +}, every ordered pair kept.
    """
    n = len(mu)
    n_mu = 3 if variant == "jiang" else 2
    n_bins = 2 * n_mu * int(np.prod([k * k for _, k in levels], dtype=np.int64))
    # Few possible cells: count into a dense histogram; many (long width sweeps): sort keys.
    dense = n_bins <= _DENSE_BINS
    histogram = np.zeros(n_bins, dtype=np.int64) if dense else None
    parts_keys = []
    parts_counts = []
    for rows in row_blocks(n):
        cell = np.zeros((rows.stop - rows.start, n), dtype=np.int64)
        for codes, k in levels:
            cell = (cell * k + codes[rows, None]) * k + codes[None, :]
        g_greater = g[rows, None] > g[None, :]
        mu_greater = mu[rows, None] > mu[None, :]
        if variant == "jiang":
            v_mu = 2 * mu_greater + (mu[rows, None] == mu[None, :])
            key = ((cell * 2 + g_greater) * n_mu + v_mu)[g[rows, None] != g[None, :]]
        else:
            key = ((cell * 2 + g_greater) * n_mu + mu_greater).ravel()
        if dense:
            histogram += np.bincount(key, minlength=n_bins)
        else:
            uniq, counts = np.unique(key, return_counts=True)
            parts_keys.append(uniq)
            parts_counts.append(counts)
    if dense:
        uniq = np.flatnonzero(histogram)
        totals = histogram[uniq]
    else:
        keys = np.concatenate(parts_keys)
        uniq, inverse = np.unique(keys, return_inverse=True)
        totals = np.bincount(inverse, weights=np.concatenate(parts_counts)).astype(np.int64)
    cells, cell_index = np.unique(uniq // (2 * n_mu), return_inverse=True)
    table = np.zeros((len(cells), 2, n_mu), dtype=np.int64)
    within = uniq % (2 * n_mu)
    table[cell_index, within // n_mu, within % n_mu] = totals
    return table


def _jiang_score(table: np.ndarray) -> float:
    """I(V_μ; V_g | U) / H(V_g | U) with p(U) the share of pairs in each cell (bits)."""
    total = table.sum()
    if total == 0:
        return float("nan")
    n_cell = table.sum(axis=(1, 2)).astype(float)
    n_cell_g = table.sum(axis=2).astype(float)
    n_cell_mu = table.sum(axis=1).astype(float)
    joint = table.astype(float)
    nz = joint > 0
    expected = n_cell_g[:, :, None] * n_cell_mu[:, None, :]
    ratio = np.where(nz, joint * n_cell[:, None, None], 1.0) / np.where(nz, expected, 1.0)
    information = float(np.sum(np.where(nz, joint * np.log2(ratio), 0.0))) / total
    nz_g = n_cell_g > 0
    share = np.where(nz_g, n_cell_g / np.where(n_cell[:, None] > 0, n_cell[:, None], 1.0), 1.0)
    entropy = float(-np.sum(np.where(nz_g, n_cell_g * np.log2(share), 0.0))) / total
    if entropy <= 0.0:
        return float("nan")
    # Rounding can push a perfect dependence a hair above 1.
    return min(max(information / entropy, 0.0), 1.0)


def _pgdl_score(table: np.ndarray) -> float:
    """Mean over cells of MI (bits) / mean over cells of the V_g entropy, as in PGDL."""
    if table.shape[0] == 0:
        return float("nan")
    joint = table.astype(float) / table.sum(axis=(1, 2), keepdims=True)
    p_g = joint.sum(axis=2)
    p_mu = joint.sum(axis=1)
    entropies = -np.sum(p_g * np.log2(p_g + PGDL_LOG_EPSILON), axis=1)
    nz = joint > 0
    expected = p_g[:, :, None] * p_mu[:, None, :]
    ratio = np.where(nz, joint, 1.0) / np.where(nz, expected, 1.0)
    mis = np.sum(np.where(nz, joint * np.log2(ratio), 0.0), axis=(1, 2))
    mean_entropy = float(np.mean(entropies))
    if mean_entropy == 0.0:
        return float("nan")
    return float(np.mean(mis)) / mean_entropy

"""The O(n log n) forms of the pairwise statistics (analysis/kendall.py's Concordance, the
bootstrap's τ* and ψ*, the conditional mutual information counted by cell) against their
pairwise definitions, exactly, and Kendall's τ against scipy on a zoo of 20,000 models."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import analysis.cmi as cmi
from analysis.bootstrap import psi_statistic, tau_statistic
from analysis.kendall import Concordance, granulated_kendall, kendall_tau


def _signs(values):
    return np.sign(values[:, None] - values[None, :]).astype(np.int64)


def _pairwise(x, y, groups, weights):
    """Σ over ordered pairs of a group of w_i w_j sign(x_i − x_j) sign(y_i − y_j), per group."""
    same = groups[:, None] == groups[None, :]
    pair = _signs(x) * _signs(y) * same
    labels = np.unique(groups)
    return np.array([[w[groups == g] @ pair[np.ix_(groups == g, np.ones(len(x), bool))] @ w for g in labels]
                     for w in weights])


def test_concordance_equals_the_pairwise_sums_for_any_weights_groups_and_ties():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 40))
        x = rng.integers(0, rng.integers(1, 9), n).astype(float)
        y = rng.integers(0, rng.integers(1, 9), n).astype(float)
        groups = rng.integers(0, rng.integers(1, 5), n)
        weights = rng.integers(0, 4, (3, n))
        concordance = Concordance(x, y, groups)
        assert np.array_equal(concordance.sums(weights), _pairwise(x, y, groups, weights))
        codes = rng.integers(0, 3, n)
        cross = np.zeros((3, 3), dtype=np.int64)
        for i, j in itertools.product(range(n), repeat=2):
            if groups[i] == groups[j] and x[j] < x[i] and y[j] < y[i]:
                cross[codes[i], codes[j]] += 1
        assert np.array_equal(concordance.cross(codes, 3), cross)


def test_kendall_tau_of_20000_models_equals_scipy_and_with_ties_the_pairwise_tau_a():
    rng = np.random.default_rng(1)
    x = rng.normal(size=20_000)
    y = x + rng.normal(size=20_000)
    assert kendall_tau(x, y) == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)
    x, y = np.round(x[:800], 1), np.round(y[:800], 1)
    n = len(x)
    assert kendall_tau(x, y) == np.sum(_signs(x) * _signs(y)) / (n * (n - 1))


def _tau_star_pairwise(x, y, indices):
    n = len(x)
    pairs = (_signs(x) * _signs(y)).astype(float)
    counts = np.zeros((len(indices), n))
    np.add.at(counts, (np.arange(len(indices))[:, None], indices), 1.0)
    return np.einsum("bi,ij,bj->b", counts, pairs, counts) / (n * n - np.sum(counts * counts, axis=1))


def test_bootstrap_tau_star_equals_its_pairwise_definition_exactly():
    rng = np.random.default_rng(2)
    for n in (3, 17, 150):
        x = rng.integers(0, 6, n).astype(float)
        y = rng.integers(0, 4, n).astype(float)
        indices = rng.integers(0, n, (50, n))
        with np.errstate(invalid="ignore", divide="ignore"):
            expected = _tau_star_pairwise(x, y, indices)
        assert np.array_equal(tau_statistic(x, y)(indices), expected, equal_nan=True)


def _psi_star_pairwise(frame, axes, hold_fixed, indices):
    n = len(frame)
    x, y = frame["m"].to_numpy(float), frame["t"].to_numpy(float)
    target = _signs(y).astype(float)
    pairs, untied = _signs(x) * target, np.abs(target)
    counts = np.zeros((len(indices), n))
    np.add.at(counts, (np.arange(len(indices))[:, None], indices), 1.0)
    psis = []
    for axis in axes:
        keys = [a for a in axes if a != axis] + [c for c in hold_fixed if c != axis]
        codes = frame.groupby(keys, sort=True).ngroup().to_numpy()
        same = (codes[:, None] == codes[None, :]).astype(float)
        onehot = np.eye(codes.max() + 1)[codes]
        total = (counts * (counts @ (pairs * same))) @ onehot
        varied = (counts * (counts @ (untied * same))) @ onehot
        distinct = (counts * (counts @ (same - np.eye(n)))) @ onehot
        used = (distinct > 0) & (varied > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            taus = np.where(used, total / np.where(used, distinct, 1.0), 0.0)
            psis.append(np.where(used.any(axis=1), taus.sum(axis=1) / used.sum(axis=1), np.nan))
    stacked = np.vstack(psis)
    defined = np.isfinite(stacked)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(defined.any(axis=0), np.where(defined, stacked, 0.0).sum(axis=0) / defined.sum(axis=0), np.nan)


def test_bootstrap_psi_star_and_granulated_kendall_equal_their_pairwise_definitions_exactly():
    rng = np.random.default_rng(3)
    for n in (6, 40, 120):
        frame = pd.DataFrame({"m": rng.integers(0, 5, n).astype(float), "t": rng.integers(0, 4, n).astype(float),
                              "a": rng.integers(0, 3, n), "b": rng.integers(0, 2, n), "seed": rng.integers(0, 2, n)})
        indices = rng.integers(0, n, (40, n))
        expected = _psi_star_pairwise(frame, ["a", "b"], ["seed"], indices)
        assert np.array_equal(psi_statistic(frame, "m", "t", ["a", "b"], hold_fixed=["seed"])(indices), expected,
                              equal_nan=True)
        result = granulated_kendall(frame, "m", "t", ["a", "b"], hold_fixed=["seed"])
        for axis in ("a", "b"):
            keys = [k for k in ("a", "b", "seed") if k != axis]
            taus = [kendall_tau(g["m"], g["t"]) for _, g in frame.groupby(keys, sort=True)
                    if len(g) >= 2 and g["t"].nunique() > 1]
            assert result.groups_used[axis] == len(taus)
            assert (result.per_axis[axis] == np.mean(taus)) if taus else np.isnan(result.per_axis[axis])


@pytest.mark.parametrize("variant", cmi.VARIANTS)
def test_cmi_counted_by_cell_equals_counted_pair_by_pair(monkeypatch, variant):
    """The same tables, hence the same scores, whichever counting is used; the cell counting
    (linear in the models for a fixed grid) on a zoo large enough to choose it by itself."""
    rng = np.random.default_rng(4)
    frames = []
    for _ in range(30):
        n = int(rng.integers(2, 60))
        frames.append(pd.DataFrame({"m": rng.integers(0, 6, n).astype(float), "t": rng.integers(0, 4, n).astype(float),
                                    "a": rng.integers(0, 3, n), "b": rng.choice([0.5, 1.0, np.nan], n),
                                    "c": rng.integers(0, 2, n)}))
    grid = pd.DataFrame(list(itertools.product(range(4), range(3), range(40))), columns=["a", "b", "c"])
    grid["t"] = rng.normal(size=len(grid)).round(2)
    grid["m"] = grid["t"] + rng.normal(size=len(grid))
    frames.append(grid)
    for frame in frames:
        scores = {}
        for by_cell in (True, False):
            monkeypatch.setattr(cmi, "_counted_by_cell", lambda n, cells, by_cell=by_cell: by_cell)
            cmi._PairCounts._last = None
            scores[by_cell] = cmi.cmi_by_set(frame, "m", "t", ["a", "b", "c"], variant=variant)
        assert repr(scores[True]) == repr(scores[False])
    monkeypatch.undo()
    assert cmi._counted_by_cell(len(grid), 12) and not cmi._counted_by_cell(60, 12)

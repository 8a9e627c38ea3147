import itertools
import math

import numpy as np
import pandas as pd
import pytest

from analysis.bootstrap import (
    adjusted_r2_ci,
    adjusted_r2_statistic,
    covers,
    kendall_tau_ci,
    psi_ci,
    psi_statistic,
    tau_statistic,
)
from analysis.kendall import granulated_kendall, kendall_tau
from analysis.regression import adjusted_r2


def grid_zoo(seed: int, noise: float = 1.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame([dict(width=w, depth=d, seed=s)
                          for w, d, s in itertools.product([8, 16, 32], [2, 3], [0, 1])])
    frame["measure"] = rng.integers(0, 6, len(frame)).astype(float)  # ties in the measure
    frame["target"] = 0.3 * frame["measure"] + noise * rng.normal(size=len(frame))
    return frame


def test_statistics_of_the_identity_resample_are_the_tables_statistics():
    frame = grid_zoo(0)
    n = len(frame)
    identity = np.arange(n)[None, :]
    x, y = frame["measure"].to_numpy(), frame["target"].to_numpy()
    assert tau_statistic(x, y)(identity)[0] == pytest.approx(kendall_tau(x, y), abs=1e-12)
    assert adjusted_r2_statistic(x, y)(identity)[0] == pytest.approx(adjusted_r2(x, y), abs=1e-12)
    expected = granulated_kendall(frame, "measure", "target", ["width", "depth"], hold_fixed=["seed"]).psi
    psi = psi_statistic(frame, "measure", "target", ["width", "depth"], hold_fixed=["seed"])(identity)[0]
    assert psi == pytest.approx(expected, abs=1e-12)


def test_a_resample_counts_pairs_of_distinct_models_only():
    # Models 0, 0, 1, 2: the two copies of model 0 are not a pair; the other five pairs are.
    x = np.array([0.0, 1.0, 2.0, 3.0])
    y = np.array([0.0, 2.0, 1.0, 3.0])
    resample = np.array([[0, 0, 1, 2]])
    resampled_x, resampled_y = x[resample[0]], y[resample[0]]
    pairs = [(i, j) for i, j in itertools.combinations(range(4), 2) if resample[0, i] != resample[0, j]]
    expected = np.mean([np.sign(resampled_x[i] - resampled_x[j]) * np.sign(resampled_y[i] - resampled_y[j])
                        for i, j in pairs])
    assert tau_statistic(x, y)(resample)[0] == pytest.approx(expected)


def test_bootstrap_intervals_cover_the_known_tau_of_synthetic_zoos():
    # Measure and target bivariate normal with correlation rho: the population τ is
    # (2/π) arcsin(rho) (Kendall 1938) and the population R² is rho².
    rho, n, zoos = 0.6, 60, 20
    tau, r2 = 2 / math.pi * math.asin(rho), rho ** 2
    tau_hits = r2_hits = 0
    for seed in range(zoos):
        rng = np.random.default_rng(100 + seed)
        x = rng.normal(size=n)
        y = rho * x + math.sqrt(1 - rho ** 2) * rng.normal(size=n)
        interval = kendall_tau_ci(x, y)
        assert interval[0] < kendall_tau(x, y) < interval[1]
        tau_hits += covers(interval, tau)
        r2_hits += covers(adjusted_r2_ci(x, y), r2)
    # 95% intervals: 19 of 20 expected; 16 leaves room for an unlucky draw (P < 2%).
    assert tau_hits >= 16 and r2_hits >= 16


def test_psi_interval_covers_the_tau_of_a_zoo_built_with_one_known_tau_per_group():
    # The measure follows width, which drives the target through noise (ψ_width well above 0,
    # below 1), and depth drives neither (ψ_depth near 0); ψ's interval must hold the estimate
    # and exclude 0 and 1.
    rng = np.random.default_rng(3)
    rows = []
    for depth, seed in itertools.product(range(4), range(6)):
        for width in (8, 16, 32):
            rows.append({"width": width, "depth": depth, "seed": seed, "measure": width + rng.normal(0, 0.1),
                         "target": width + 10 * rng.normal()})
    frame = pd.DataFrame(rows)
    estimate = granulated_kendall(frame, "measure", "target", ["width", "depth"], hold_fixed=["seed"]).psi
    low, high = psi_ci(frame, "measure", "target", ["width", "depth"], hold_fixed=["seed"])
    assert low <= estimate <= high
    assert 0 < low and high < 1


def test_intervals_are_seeded_and_nan_when_undefined():
    frame = grid_zoo(1)
    x, y = frame["measure"], frame["target"]
    assert kendall_tau_ci(x, y) == kendall_tau_ci(x, y)
    assert kendall_tau_ci(x, y, seed=1) != kendall_tau_ci(x, y)
    assert all(math.isnan(v) for v in kendall_tau_ci([1.0, 2.0], [2.0, 1.0]))
    constant = np.ones(len(frame))
    assert all(math.isnan(v) for v in adjusted_r2_ci(x, constant))
    assert all(math.isnan(v) for v in psi_ci(frame, "measure", "target", []))
    assert covers((math.nan, math.nan), 0.0) is None


def test_pearson_mean_and_difference_intervals_match_their_normal_theory_on_large_samples():
    from analysis.bootstrap import mean_ci, mean_difference_ci, pearson_r_ci

    rng = np.random.default_rng(3)
    x = rng.normal(size=400)
    y = 0.5 * x + rng.normal(size=400)
    r = np.corrcoef(x, y)[0, 1]
    z, half = np.arctanh(r), 1.96 / np.sqrt(400 - 3)  # Fisher's z interval
    low, high = pearson_r_ci(x, y)
    assert low == pytest.approx(np.tanh(z - half), abs=0.03) and high == pytest.approx(np.tanh(z + half), abs=0.03)
    se = y.std(ddof=1) / np.sqrt(400)
    low, high = mean_ci(y)
    assert low == pytest.approx(y.mean() - 1.96 * se, abs=0.02) and high == pytest.approx(y.mean() + 1.96 * se, abs=0.02)
    se = np.sqrt(x.var(ddof=1) / 400 + y.var(ddof=1) / 400)
    low, high = mean_difference_ci(x, y)
    assert low == pytest.approx(x.mean() - y.mean() - 1.96 * se, abs=0.03)
    assert np.isnan(mean_ci([1.0, 2.0])).all() and np.isnan(mean_difference_ci([1.0, 2.0, 3.0], [1.0, 2.0])).all()


def test_pearson_interval_leaves_out_the_few_resamples_with_a_constant_column():
    from analysis.bootstrap import pearson_r_ci

    # Eight models whose test accuracies tie (360 test images): some resamples draw one value only.
    x = [0.883, 0.653, 0.500, 0.486, 0.732, 0.494, 0.803, 1.0]
    y = [0.975, 0.981, 0.972, 0.981, 0.981, 0.983, 0.975, 0.986]
    low, high = pearson_r_ci(x, y)
    assert -1 <= low < np.corrcoef(x, y)[0, 1] < high <= 1
    assert np.isnan(pearson_r_ci([1.0, 2.0, 3.0], [1.0, 1.0, 1.0])).all()
    assert np.isnan(pearson_r_ci([1.0, 2.0], [1.0, 2.0])).all()

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.errors import AnalysisError
from analysis.kendall import granulated_kendall, kendall_tau, kendall_tau_se


def brute_force_tau(x, y):
    """Jiang et al. 2020: (concordant − discordant) / (n(n−1)/2), ties count 0."""
    n = len(x)
    total = 0
    for i, j in itertools.combinations(range(n), 2):
        total += np.sign(x[i] - x[j]) * np.sign(y[i] - y[j])
    return total / (n * (n - 1) / 2)


@pytest.mark.parametrize("n", [2, 3, 17, 200])
def test_kendall_tau_equals_scipy_on_continuous_data(n):
    rng = np.random.default_rng(n)
    x = rng.normal(size=n)
    y = 0.5 * x + rng.normal(size=n)
    assert kendall_tau(x, y) == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)


def test_kendall_tau_with_ties_is_tau_a_and_equals_a_brute_force_pair_loop():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 4, size=40).astype(float)
    y = rng.integers(0, 3, size=40).astype(float) + 0.3 * x
    expected = brute_force_tau(x, y)
    assert kendall_tau(x, y) == pytest.approx(expected, abs=1e-12)
    # Ties stay in the denominator, so |τ-a| < |τ-b| (scipy's default) when there are ties.
    assert abs(kendall_tau(x, y)) < abs(stats.kendalltau(x, y).statistic)


def test_kendall_tau_of_hand_example_with_a_tie():
    # Pairs (0,1): x tie -> 0; (0,2): +·+ = +1; (1,2): +·− = −1 -> τ = 0 / 3.
    # With y = (1, 2, 3): (0,1) 0, (0,2) +1, (1,2) +1 -> τ = 2/3.
    assert kendall_tau([1.0, 1.0, 2.0], [1.0, 3.0, 2.0]) == pytest.approx(0.0)
    assert kendall_tau([1.0, 1.0, 2.0], [1.0, 2.0, 3.0]) == pytest.approx(2.0 / 3.0)


def test_kendall_tau_rejects_nan_and_too_few_models():
    with pytest.raises(AnalysisError, match="finite"):
        kendall_tau([1.0, float("nan")], [1.0, 2.0])
    with pytest.raises(AnalysisError, match="at least 2"):
        kendall_tau([1.0], [1.0])
    with pytest.raises(AnalysisError, match="lengths differ"):
        kendall_tau([1.0, 2.0], [1.0, 2.0, 3.0])


def test_kendall_tau_se_reproduces_the_paper_value_for_324_models():
    # The first paper reports s_tau = 0.037 under Table 1 for its 324 models.
    assert kendall_tau_se(324) == pytest.approx(0.037, abs=5e-4)
    assert kendall_tau_se(10) == pytest.approx(math.sqrt(2 * 25 / (9 * 10 * 9)))


def grid_2x2x2(measure_by_cell):
    """Axes a, b, c in {0, 1}; target g = a + 2b + 4c (all distinct)."""
    rows = []
    for (a, b, c), mu in measure_by_cell.items():
        rows.append({"a": a, "b": b, "c": c, "g": a + 2 * b + 4 * c, "mu": mu})
    return pd.DataFrame(rows)


HAND_MEASURE = {
    (0, 0, 0): 0.0, (1, 0, 0): 1.0,
    (0, 1, 0): 3.0, (1, 1, 0): 2.0,
    (0, 0, 1): 5.0, (1, 0, 1): 6.0,
    (0, 1, 1): 4.0, (1, 1, 1): 4.0,
}


def test_granulated_kendall_on_a_hand_built_2x2x2_grid():
    # Worked out by hand; each group holds the two models that differ in one axis only.
    # Axis a, groups (b, c): (0,0) Δg=+1 Δμ=+1 -> +1; (1,0) Δg=+1 Δμ=−1 -> −1;
    #   (0,1) +1/+1 -> +1; (1,1) Δμ = 0 (tie) -> 0.        ψ_a = (1 − 1 + 1 + 0)/4 = 0.25
    # Axis b, groups (a, c): (0,0) g 0->2, μ 0->3 -> +1; (1,0) g 1->3, μ 1->2 -> +1;
    #   (0,1) g 4->6, μ 5->4 -> −1; (1,1) g 5->7, μ 6->4 -> −1.       ψ_b = 0
    # Axis c, groups (a, b): μ rises with c in all four groups -> +1 each.   ψ_c = 1
    # ψ = (0.25 + 0 + 1) / 3
    result = granulated_kendall(grid_2x2x2(HAND_MEASURE), "mu", "g", ["a", "b", "c"])
    assert result.per_axis == pytest.approx({"a": 0.25, "b": 0.0, "c": 1.0})
    assert result.psi == pytest.approx(1.25 / 3)
    assert result.groups_used == {"a": 4, "b": 4, "c": 4}
    assert result.groups_skipped == {"a": 0, "b": 0, "c": 0}


def test_granulated_kendall_holds_seeds_fixed_so_each_group_varies_one_axis():
    first = grid_2x2x2(HAND_MEASURE).assign(seed=0)
    # The second seed's measure is reversed, so every one of its group taus flips sign.
    second = grid_2x2x2({k: -v for k, v in HAND_MEASURE.items()}).assign(seed=1)
    data = pd.concat([first, second], ignore_index=True)
    result = granulated_kendall(data, "mu", "g", ["a", "b", "c"], hold_fixed=["seed"])
    assert result.per_axis == pytest.approx({"a": 0.0, "b": 0.0, "c": 0.0})
    assert result.groups_used == {"a": 8, "b": 8, "c": 8}


def test_granulated_kendall_skips_and_counts_small_and_constant_target_groups():
    data = grid_2x2x2(HAND_MEASURE)
    # Remove model (1,1,1): the groups containing it now hold one model.
    data = data[~((data.a == 1) & (data.b == 1) & (data.c == 1))].copy()
    # Make the target constant in the a-group (b=0, c=0).
    data.loc[(data.b == 0) & (data.c == 0), "g"] = 10.0
    result = granulated_kendall(data, "mu", "g", ["a", "b", "c"])
    # Axis a: groups (0,0) constant -> skipped, (1,0) −1, (0,1) +1, (1,1) one model -> skipped.
    assert result.groups_used["a"] == 2 and result.groups_skipped["a"] == 2
    assert result.per_axis["a"] == pytest.approx(0.0)
    # Axis b: (0,0): g 10 -> 2, μ 0 -> 3: −1; (1,0): g 10 -> 3, μ 1 -> 2: −1; (0,1): −1; (1,1) skipped.
    assert result.per_axis["b"] == pytest.approx(-1.0)
    assert result.groups_skipped["b"] == 1
    # Axis c: (0,0): g 10 -> 4, μ 0 -> 5: −1; (1,0): g 10 -> 5, μ 1 -> 6: −1; (0,1): +1; (1,1) skipped.
    assert result.per_axis["c"] == pytest.approx(-1.0 / 3.0)
    assert result.psi == pytest.approx((0.0 - 1.0 - 1.0 / 3.0) / 3.0)


def test_granulated_kendall_names_a_missing_column():
    with pytest.raises(AnalysisError, match="missing column"):
        granulated_kendall(grid_2x2x2(HAND_MEASURE), "mu", "g", ["a", "nope"])

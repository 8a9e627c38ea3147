import itertools
import math
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest

from analysis.cmi import cmi_by_set, conditional_mutual_information
from analysis.errors import AnalysisError

AXES = ["a", "b", "c"]


def grid_3x3x3(seeds: int, rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for a, b, c, s in itertools.product(range(3), range(3), range(3), range(seeds)):
        rows.append({"a": a, "b": b, "c": c, "seed": s})
    frame = pd.DataFrame(rows)
    frame["g"] = 0.3 * frame.a - 0.2 * frame.b + 0.1 * frame.c + rng.normal(0, 0.2, len(frame))
    frame["random"] = rng.normal(size=len(frame))
    return frame


def pgdl_brute_force(models, measure, target, hparams):
    """The PGDL scoring rules written out with dictionaries and math.log2, independently of
    the vectorized implementation: all ordered pairs incl. self, '+' only when strictly
    greater, sets = ordered pairs of distinct hparams, cell = (h1_i, h1_j, h2_i, h2_j)."""
    best = math.inf
    for h1, h2 in itertools.permutations(hparams, 2):
        cells = defaultdict(lambda: defaultdict(int))
        for i in range(len(models)):
            for j in range(len(models)):
                key = (models[h1][i], models[h1][j], models[h2][i], models[h2][j])
                vg = "+" if models[target][i] > models[target][j] else "-"
                vm = "+" if models[measure][i] > models[measure][j] else "-"
                cells[key][(vg, vm)] += 1
        mis, entropies = [], []
        for counts in cells.values():
            total = sum(counts.values())
            p_g = {v: sum(c for (g, _), c in counts.items() if g == v) / total for v in "+-"}
            p_m = {v: sum(c for (_, m), c in counts.items() if m == v) / total for v in "+-"}
            mi = 0.0
            for (g, m), c in counts.items():
                joint = c / total
                if joint > 0:
                    mi += joint * math.log2(joint / (p_g[g] * p_m[m]))
            mis.append(mi)
            entropies.append(-sum(p * math.log2(p + 1e-12) for p in p_g.values()))
        best = min(best, (sum(mis) / len(mis)) / (sum(entropies) / len(entropies)))
    return best


# Four models on a tiny grid: h1 in {0, 1} with two models each, h2 constant.
HAND = pd.DataFrame({
    "h1": [0, 0, 1, 1],
    "h2": [0, 0, 0, 0],
    "g": [1.0, 2.0, 3.0, 4.0],
    "mu": [1.0, 2.0, 4.0, 3.0],
})


def test_pgdl_variant_matches_the_hand_computed_small_case():
    # Cells (h1_i, h1_j) (h2 is constant), 4 ordered pairs each, self-pairs and ties '−':
    #   (0,0): V_g = V_mu = (−, −, +, −)  -> MI = H = H(1/4) = 2 − 0.75 log2 3
    #   (1,1): V_g = (−, −, +, −), V_mu = (−, +, −, −) -> MI = 2.5 − 1.5 log2 3, H = H(1/4)
    #   (0,1): all '−' ; (1,0): all '+'  -> MI = 0, H = 0
    # score = (sum MI / 4) / (sum H / 4) = (4.5 − 2.25 log2 3) / (4 − 1.5 log2 3)
    log3 = math.log2(3)
    expected = (4.5 - 2.25 * log3) / (4 - 1.5 * log3)
    value = conditional_mutual_information(HAND, "mu", "g", ["h1", "h2"], variant="pgdl")
    assert value == pytest.approx(expected, abs=1e-9)
    assert value == pytest.approx(pgdl_brute_force(HAND, "mu", "g", ["h1", "h2"]), abs=1e-12)


def test_jiang_variant_matches_the_hand_computed_small_case():
    # S = ∅: 12 ordered pairs of distinct models, only (C,D) and (D,C) disagree:
    #   joint (+,+) 5, (−,−) 5, (+,−) 1, (−,+) 1 -> I = 1 − H_b(1/6) bits, H(V_g) = 1.
    # S = {h1}: cells (0,0) and (1,1) hold one pair in each orientation, perfectly
    #   (anti-)dependent -> I = H = 1/3 -> Î = 1; the mixed cells have H = 0.
    # K = min(1 − H_b(1/6), 1).
    h_b = -(1 / 6) * math.log2(1 / 6) - (5 / 6) * math.log2(5 / 6)
    value = conditional_mutual_information(HAND, "mu", "g", ["h1"], variant="jiang")
    assert value == pytest.approx(1 - h_b, abs=1e-12)
    by_set = cmi_by_set(HAND, "mu", "g", ["h1"], variant="jiang")
    assert by_set[("h1",)] == pytest.approx(1.0)


def test_pgdl_variant_equals_a_brute_force_loop_on_random_data_with_ties():
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({
        "x": rng.integers(0, 3, 30),
        "y": rng.integers(0, 2, 30),
        "z": rng.integers(0, 2, 30),
        "g": rng.integers(0, 5, 30).astype(float),
        "mu": rng.integers(0, 4, 30).astype(float),
    })
    value = conditional_mutual_information(frame, "mu", "g", ["x", "y", "z"], variant="pgdl")
    assert value == pytest.approx(pgdl_brute_force(frame, "mu", "g", ["x", "y", "z"]), abs=1e-12)


@pytest.mark.parametrize("variant", ["jiang", "pgdl"])
def test_cmi_of_the_target_with_itself_is_one(variant):
    frame = grid_3x3x3(seeds=3, rng=np.random.default_rng(0))
    frame["same"] = frame["g"]
    assert conditional_mutual_information(frame, "same", "g", AXES, variant=variant) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("variant", ["jiang", "pgdl"])
def test_cmi_of_an_independent_random_measure_is_near_zero(variant):
    frame = grid_3x3x3(seeds=4, rng=np.random.default_rng(1))
    value = conditional_mutual_information(frame, "random", "g", AXES, variant=variant)
    assert 0.0 <= value < 0.05


def test_cmi_depends_only_on_the_measure_order():
    frame = grid_3x3x3(seeds=2, rng=np.random.default_rng(2))
    frame["noisy"] = frame["g"] + np.random.default_rng(5).normal(0, 0.2, len(frame))
    frame["monotone"] = np.exp(3 * frame["noisy"])
    for variant in ("jiang", "pgdl"):
        assert conditional_mutual_information(frame, "monotone", "g", AXES, variant=variant) == pytest.approx(
            conditional_mutual_information(frame, "noisy", "g", AXES, variant=variant), abs=1e-12
        )


def test_jiang_cmi_conditions_on_sets_of_size_zero_one_and_two():
    frame = grid_3x3x3(seeds=2, rng=np.random.default_rng(4))
    sets = cmi_by_set(frame, "random", "g", AXES, variant="jiang")
    assert set(sets) == {(), ("a",), ("b",), ("c",), ("a", "b"), ("a", "c"), ("b", "c")}
    pgdl_sets = cmi_by_set(frame, "random", "g", AXES, variant="pgdl")
    assert set(pgdl_sets) == set(itertools.permutations(AXES, 2))


def test_pgdl_needs_two_axes_and_unknown_variant_is_an_error():
    assert math.isnan(conditional_mutual_information(HAND, "mu", "g", ["h1"], variant="pgdl"))
    with pytest.raises(AnalysisError, match="variant"):
        conditional_mutual_information(HAND, "mu", "g", ["h1"], variant="other")


def test_sparse_pair_counting_for_many_cells_agrees_with_the_dense_histogram(monkeypatch):
    frame = grid_3x3x3(seeds=2, rng=np.random.default_rng(6))
    frame["noisy"] = frame["g"] + np.random.default_rng(7).normal(0, 0.3, len(frame))
    dense = {v: cmi_by_set(frame, "noisy", "g", AXES, variant=v) for v in ("jiang", "pgdl")}
    monkeypatch.setattr("analysis.cmi._DENSE_BINS", 0)
    for variant, expected in dense.items():
        assert cmi_by_set(frame, "noisy", "g", AXES, variant=variant) == pytest.approx(expected, abs=1e-12)


def pgdl_reference_set_scores(models, measure, target, hparams):
    """Score of every ordered pair (h1, h2) of distinct hyperparameters as the PGDL program
    computes it: the cells are *all* value combinations of the two hyperparameters, and an
    empty cell (0/0 probabilities) makes the whole set's score NaN."""
    values = {h: sorted(set(models[h])) for h in hparams}
    scores = {}
    for h1, h2 in itertools.permutations(hparams, 2):
        present = set(zip(models[h1], models[h2]))
        complete = all((a, b) in present for a in values[h1] for b in values[h2])
        scores[(h1, h2)] = pgdl_brute_force(models, measure, target, [h1, h2]) if complete else math.nan
    return scores


def pgdl_reference_minimum(scores, names):
    """The PGDL program's task score: ``for h1 in names: for h2 in names: if h1 != h2:
    min_mi = min(mi, min_mi)``, starting from inf, with plain Python ``min``."""
    running = math.inf
    for h1 in names:
        for h2 in names:
            if h1 != h2:
                running = min(scores[(h1, h2)], running)
    return running


def test_pgdl_scorer_depends_on_the_hyperparameter_order_on_an_incomplete_grid_and_genzoo_does_not():
    # x, y, z in {0, 1}, three models per cell, no model with x = 1 and y = 1: the sets
    # (x, y) and (y, x) have empty cells, every set with z is complete.
    rng = np.random.default_rng(17)
    rows = [{"x": x, "y": y, "z": z} for x, y, z, _ in itertools.product(range(2), range(2), range(2), range(3))
            if not (x == 1 and y == 1)]
    frame = pd.DataFrame(rows)
    frame["g"] = 0.5 * frame.x + 0.3 * frame.z + rng.normal(0, 0.3, len(frame))
    frame["mu"] = frame["g"] + rng.normal(0, 0.3, len(frame))

    reference = pgdl_reference_set_scores(frame, "mu", "g", ["x", "y", "z"])
    assert sorted(s for s, v in reference.items() if math.isnan(v)) == [("x", "y"), ("y", "x")]
    xyz = pgdl_reference_minimum(reference, ["x", "y", "z"])  # (y, z), (z, x), (z, y) follow (y, x)
    yzx = pgdl_reference_minimum(reference, ["y", "z", "x"])  # only (x, z) follows (x, y)
    zxy = pgdl_reference_minimum(reference, ["z", "x", "y"])  # (y, x) comes last
    assert xyz == reference[("y", "z")] and yzx == reference[("x", "z")]
    assert xyz < yzx - 0.05  # 0.37 against 0.46: the order changes the score
    assert math.isnan(zxy)

    genzoo = {order: conditional_mutual_information(frame, "mu", "g", list(order), variant="pgdl")
              for order in itertools.permutations(["x", "y", "z"])}
    assert len({round(v, 12) for v in genzoo.values()}) == 1
    shuffled = frame.sample(frac=1.0, random_state=0)
    assert conditional_mutual_information(shuffled, "mu", "g", ["z", "y", "x"], variant="pgdl") == pytest.approx(
        genzoo[("x", "y", "z")], abs=1e-12)
    # genzoo: the minimum over every set, the incomplete (x, y) scored on its non-empty cells;
    # on the complete sets it agrees with the reference.
    ours = cmi_by_set(frame, "mu", "g", ["x", "y", "z"], variant="pgdl")
    for subset, value in reference.items():
        if math.isfinite(value):
            assert ours[subset] == pytest.approx(value, abs=1e-12)
        else:
            assert math.isfinite(ours[subset])
    assert genzoo[("x", "y", "z")] == pytest.approx(min(ours.values()), abs=1e-12)

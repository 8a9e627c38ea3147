"""The comparison with a paper's published claims on constructed zoos: the verdict rules against
an independent re-statement of them over a grid of cases, each statistic against a direct
computation (scipy, numpy, brute-force groupings), the orientation map, the protocol clause,
and the claim files' one-line errors."""

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.against_paper import (
    CONTRADICTED,
    DETECTABLE_SE,
    INCONCLUSIVE,
    MAGNITUDE_FACTOR,
    REPRODUCED,
    Estimate,
    Zoo,
    compare,
    imp_runs,
    section,
    verdict,
)
from analysis.data import index_by_model
from analysis.errors import AnalysisError
from analysis.kendall import kendall_tau_se
from analysis.paper_claims import choose, parse_paper
from analysis.report import analyze
from analysis.tables import table1, table2, table3

AXES = ["width", "dropout", "augment", "weight_decay", "depth"]


# ------------------------------------------------------------------ the verdict rules

def expected(kind, direction, paper, low, high, se, differences, value):
    """The module docstring's rules, written again from the text."""
    interval = math.isfinite(low) and math.isfinite(high)
    if kind == "magnitude":
        if not interval:
            return INCONCLUSIVE
        if low <= paper * MAGNITUDE_FACTOR and high >= paper / MAGNITUDE_FACTOR:
            return REPRODUCED
        return INCONCLUSIVE if differences else CONTRADICTED
    if direction == 0:
        if (interval and low <= 0 <= high) or (not interval and value == 0):
            return REPRODUCED
        if not interval:
            return INCONCLUSIVE
        return INCONCLUSIVE if differences else CONTRADICTED
    if interval and low > 0 and direction > 0 or interval and high < 0 and direction < 0:
        return REPRODUCED
    if interval and (low > 0 or high < 0):
        return INCONCLUSIVE if differences else CONTRADICTED
    return INCONCLUSIVE


def test_verdicts_follow_the_stated_rules_on_a_grid_of_cases():
    bounds = [-0.5, -0.1, 0.0, 0.1, 0.3, 0.5, 1.2, math.nan]
    cases = 0
    for kind, direction, paper, (low, high), se, differences in itertools.product(
            ["signed", "magnitude"], [1, -1, 0], [0.05, 0.3, 0.65], itertools.product(bounds, bounds),
            [0.01, 0.2, math.nan], [(), ("dataset digits (the paper: cifar10)",)]):
        if kind == "magnitude" and direction != 1:
            continue
        if math.isfinite(low) != math.isfinite(high) or (math.isfinite(low) and low > high):
            continue
        value = (low + high) / 2 if math.isfinite(low) else 0.2
        paper_value = direction * paper if kind == "signed" else paper
        estimate = Estimate(value=value, low=low, high=high, n=30, se=se)
        same, outcome, reason = verdict(kind, direction, paper_value, estimate, differences)
        assert outcome == expected(kind, direction, paper_value, low, high, se, differences, value), \
            (kind, direction, paper_value, low, high, se, differences, outcome, reason)
        assert "\n" not in reason and reason
        if outcome == INCONCLUSIVE and differences and kind == "signed" and direction != 0 \
                and math.isfinite(low) and (low > 0 or high < 0):
            assert "the protocol differs: dataset digits" in reason
        if kind == "signed" and direction != 0 and np.sign(value) != 0:
            assert same == (np.sign(value) == direction)
        cases += 1
    assert cases > 500


def test_inconclusive_reasons_name_the_cause():
    untested = verdict("signed", 1, 0.6, Estimate(untested="prunability was not measured"))
    assert untested == (None, INCONCLUSIVE, "not tested: prunability was not measured")
    spans = verdict("signed", 1, 0.65, Estimate(value=0.1, low=-0.1, high=0.3, n=32, se=kendall_tau_se(32)))
    assert spans[1:] == (INCONCLUSIVE, "interval spans zero")
    # ψ_width of prunability (0.158) is below 2 s_τ with 32 models: an effect of that size cannot be seen.
    small = verdict("signed", 1, 0.1582, Estimate(value=0.1, low=-0.1, high=0.3, n=32, se=kendall_tau_se(32)))
    assert small[1] == INCONCLUSIVE and small[2].startswith("too few models: the paper's effect 0.158 is below 2")
    assert DETECTABLE_SE * kendall_tau_se(32) == pytest.approx(0.2487, abs=1e-4)
    missing = verdict("signed", 1, 0.65, Estimate(value=0.5, n=2, se=1.0, no_interval="2 runs; an interval needs at least 3"))
    assert missing[2] == "too few models: the paper's effect 0.65 is below 2 standard errors (2) with n = 2"
    missing = verdict("signed", 1, None, Estimate(value=0.5, n=2, no_interval="2 runs; an interval needs at least 3"))
    assert missing[2] == "no interval (2 runs; an interval needs at least 3)"
    cmi = verdict("magnitude", 1, 0.0324, Estimate(value=0.0648, n=32, no_interval="CMI has no bootstrap interval"))
    assert cmi == (None, INCONCLUSIVE, "no interval (CMI has no bootstrap interval); genzoo's value is 2× the paper's, "
                                       "inside the factor-2 band")


# ------------------------------------------------------------------ a constructed first-paper zoo

PAPER = {
    "paper": "toy", "title": "A toy paper", "citation": "Toy et al.",
    "measures": {"complexity": {"paper": "Complexity", "sign": 1}, "flipped": {"paper": "Simplicity", "sign": -1},
                 "wrong_way": {"paper": "Norm", "sign": 1}},
    "experiments": {"grid": {
        "title": "Table 1", "anchor": "complexity",
        "protocol": {"dataset": ["cifar10"], "architecture": ["nin"], "axes": AXES, "models": 324},
        "claims": [
            {"id": "tau", "ref": "Table 1", "statistic": "kendall_tau", "measure": "complexity", "value": 0.65},
            {"id": "tau_flipped", "ref": "Table 1", "statistic": "kendall_tau", "measure": "flipped", "value": 0.65},
            {"id": "tau_wrong", "ref": "Table 1", "statistic": "kendall_tau", "measure": "wrong_way", "value": -0.6},
            {"id": "r2", "ref": "Table 1", "statistic": "adjusted_r2", "measure": "complexity", "value": 0.5},
            {"id": "cmi", "ref": "Table 1", "statistic": "cmi", "measure": "complexity", "value": 0.03},
            {"id": "psi_width", "ref": "Table 2", "statistic": "psi_axis", "measure": "complexity", "axis": "width",
             "value": 0.16},
            {"id": "psi_depth", "ref": "Table 2", "statistic": "psi_axis", "measure": "complexity", "axis": "depth",
             "value": 0.2},
            {"id": "psi", "ref": "Table 2", "statistic": "psi", "measure": "complexity", "value": 0.22},
            {"id": "psi_seed", "ref": "Table 2", "statistic": "psi_axis", "measure": "complexity", "axis": "lr",
             "value": 0.1},
            {"id": "count_dropout", "ref": "Table 2", "statistic": "psi_axis", "measure": "count", "axis": "dropout",
             "value": 0.0},
            {"id": "missing", "ref": "Table 1", "statistic": "kendall_tau", "measure": "margins", "value": 0.8},
            {"id": "anchor", "ref": "Table 3", "statistic": "cmi_anchor", "measure": "wrong_way", "value": 0.01},
            {"id": "test_loss", "ref": "Figure 1b", "statistic": "kendall_tau", "measure": "complexity",
             "target": "test_loss", "value": 0.36},
        ]}},
}


def first_paper_zoo(dataset="cifar10", seed=0):
    """A full grid of the paper's five axes (72 models); ``complexity`` follows the gap,
    ``flipped`` is its negative (the map's sign −1), ``wrong_way`` follows the gap although the
    paper's value is negative, ``count`` depends on width and depth only."""
    rng = np.random.default_rng(seed)
    rows = []
    for width, dropout, augment, weight_decay, depth in itertools.product(
            [192, 288, 384], [0.0, 0.2, 0.5], [False, True], [0.0, 0.001], [2, 3]):
        gap = 0.05 + 0.0002 * width - 0.2 * dropout - 0.05 * augment + 0.03 * depth + rng.normal(0, 0.01)
        rows.append({"trial_id": f"nin-{len(rows):03d}", "status": "completed", "dataset": dataset, "model": "nin",
                     "width": width, "dropout": dropout, "augment": augment, "weight_decay": weight_decay,
                     "depth": depth, "seed": 0, "train_acc": 1.0, "test_acc": 1.0 - gap, "train_loss": 0.01,
                     "test_loss": 0.3 + gap + rng.normal(0, 0.01)})
    trials = pd.DataFrame(rows)
    measures = []
    for row in trials.itertuples():
        gap = row.train_acc - row.test_acc
        complexity = gap + rng.normal(0, 0.02)
        for name, value in (("complexity", complexity), ("flipped", -complexity), ("wrong_way", 2 * gap),
                            ("count", float(row.width * row.depth))):
            measures.append({"trial_id": row.trial_id, "measure": name, "value": value, "status": "ok"})
    return trials, pd.DataFrame(measures)


def _zoo_input(trials, measures, differences=()):
    from analysis.data import completed_trials, measures_wide, target_values

    models = completed_trials(trials)
    target = target_values(models, "gap")
    wide = measures_wide(measures, list(models.index))
    t1 = table1(wide, target, models, AXES)
    t2 = table2(wide, target, models, AXES)
    t3 = table3(wide, models, AXES, anchor="complexity")
    zoo = Zoo(models=models, measures=wide, target="gap", target_series=target, axes=AXES, t1=t1, t2=t2, t3=t3)
    comparison = choose(parse_paper(PAPER, "toy.yaml"), None, list(differences), "analysis.paper")
    return comparison, zoo


@pytest.fixture(scope="module")
def first_paper_results():
    trials, measures = first_paper_zoo()
    comparison, zoo = _zoo_input(trials, measures)
    return compare(comparison, zoo).set_index("claim"), zoo


def test_signed_claims_on_a_zoo_that_follows_the_protocol(first_paper_results):
    results, zoo = first_paper_results
    gap = zoo.target_series
    complexity = zoo.measures["complexity"]
    tau = stats.kendalltau(complexity, gap).statistic  # no ties: τ-b is the τ-a of the tables
    assert results.loc["tau", "genzoo_value"] == pytest.approx(tau)
    assert results.loc["tau", "verdict"] == REPRODUCED and results.loc["tau", "same_sign"] == "yes"
    assert results.loc["tau", "n"] == 72 and results.loc["tau", "se"] == pytest.approx(kendall_tau_se(72))
    # The map's sign −1 turns genzoo's negative τ into the paper's positive one.
    assert results.loc["tau_flipped", "genzoo_value"] == pytest.approx(tau)
    assert results.loc["tau_flipped", "verdict"] == REPRODUCED
    assert results.loc["tau_wrong", "verdict"] == CONTRADICTED
    assert results.loc["tau_wrong", "reason"] == "opposite sign, interval excludes zero"
    assert results.loc["tau_wrong", "differences"] == ""
    # τ with the test loss (a target other than the report's) is computed and compared too.
    assert results.loc["test_loss", "genzoo_value"] == pytest.approx(
        stats.kendalltau(complexity, zoo.models["test_loss"]).statistic)


def test_psi_along_an_axis_is_the_mean_tau_of_its_groups(first_paper_results):
    results, zoo = first_paper_results
    frame = zoo.models[AXES].assign(m=zoo.measures["complexity"], g=zoo.target_series)
    others = [a for a in AXES if a != "width"]
    taus = [stats.kendalltau(g["m"], g["g"]).statistic for _, g in frame.groupby(others)]
    assert results.loc["psi_width", "genzoo_value"] == pytest.approx(np.mean(taus))
    # 24 groups of 3 widths: se = sqrt(24 s_τ(3)²) / 24; 0.16 < 2 se, so the claim is too small to test.
    assert results.loc["psi_width", "se"] == pytest.approx(kendall_tau_se(3) / math.sqrt(24))
    assert bool(results.loc["psi_width", "too_small"]) is (0.16 < DETECTABLE_SE * kendall_tau_se(3) / math.sqrt(24))
    assert results.loc["psi_seed", "reason"] == "not tested: the zoo does not vary lr"
    # parameter count does not change along dropout: the paper's 0.0 is a structural zero.
    assert results.loc["count_dropout", "genzoo_value"] == 0.0 and results.loc["count_dropout", "verdict"] == REPRODUCED


def test_magnitude_and_untested_claims(first_paper_results):
    results, zoo = first_paper_results
    assert results.loc["r2", "verdict"] in (REPRODUCED, CONTRADICTED)
    low, high = results.loc["r2", ["ci_low", "ci_high"]]
    assert (results.loc["r2", "verdict"] == REPRODUCED) == (high >= 0.25 and low <= 1.0)
    assert results.loc["cmi", "verdict"] == INCONCLUSIVE and "CMI has no bootstrap interval" in results.loc["cmi", "reason"]
    assert results.loc["missing", "reason"] == "not tested: margins was not measured"
    assert math.isfinite(results.loc["anchor", "genzoo_value"])


def test_an_opposite_sign_under_a_different_protocol_is_inconclusive():
    trials, measures = first_paper_zoo(dataset="digits")
    comparison, zoo = _zoo_input(trials, measures, differences=["40 epochs"])
    results = compare(comparison, zoo).set_index("claim")
    row = results.loc["tau_wrong"]
    assert row["verdict"] == INCONCLUSIVE and row["same_sign"] == "no"
    assert row["reason"] == ("opposite sign, interval excludes zero, but the protocol differs: "
                             "dataset digits (the paper: cifar10); 40 epochs")
    assert results.loc["tau", "verdict"] == REPRODUCED  # an agreement stays one, its differences listed
    assert results.loc["tau", "differences"] == "dataset digits (the paper: cifar10); 40 epochs"
    lines = section(comparison, zoo, compare(comparison, zoo))
    text = "\n".join(lines)
    assert lines[0] == "## Against the paper" and "- dataset digits (the paper: cifar10)" in text
    assert "| tau_wrong |" in text and "Not tested by this zoo (2 claims" in text


def test_a_measure_confounded_by_convergence_is_a_protocol_difference():
    from analysis.checks import convergence_confounds

    trials, measures = first_paper_zoo()
    comparison, zoo = _zoo_input(trials, measures)
    loss = pd.Series(np.linspace(0.001, 0.6, len(zoo.models)), index=zoo.models.index)
    models = zoo.models.assign(train_loss=loss)
    wide = zoo.measures.assign(wrong_way=-loss)  # ranks the training loss, not the gap
    confounds = convergence_confounds(models, wide, zoo.target_series)
    zoo = Zoo(models=models, measures=wide, target="gap", target_series=zoo.target_series, axes=AXES,
              t1=table1(wide, zoo.target_series, models, AXES), confounds=confounds)
    row = compare(comparison, zoo).set_index("claim").loc["tau_wrong"]
    assert "wrong_way follows the final training loss (τ = -1.00)" in row["differences"]


# ------------------------------------------------------------------ the second paper: runs

STABILITY_PAPER = {
    "paper": "toy2", "title": "Stability", "citation": "Toy",
    "experiments": {"fig2": {
        "title": "Figure 2", "protocol": {"dataset": ["digits"], "architecture": ["vgg11"]},
        "claims": [
            {"id": "r", "ref": "Figure 2", "statistic": "correlation", "method": "pearson", "x": "stability",
             "y": "test_acc", "select": {"scratch": False, "target": ["S", "L"]}, "value": -0.73, "paper_n": 30},
            {"id": "tau_gap", "ref": "Figure 4", "statistic": "correlation", "method": "kendall", "x": "stability",
             "y": "gap", "direction": "positive"},
            {"id": "flat", "ref": "Figure 6", "statistic": "correlation", "method": "kendall", "x": "stability",
             "y": "hessian_top_k_sum", "direction": "positive"},
            {"id": "L_minus_S", "ref": "Figure 2", "statistic": "mean_difference", "y": "test_acc",
             "a": {"target": "L"}, "b": {"target": "S"}, "direction": "positive"},
            {"id": "noise", "ref": "Figure 5", "statistic": "mean_difference", "y": "test_acc",
             "a": {"intervention": "gaussian"}, "b": {"intervention": "prune"}, "direction": "positive"},
        ]}},
}


def stability_zoo(runs_per_target=4, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for target, base in (("S", 0.99), ("R", 0.95), ("L", 0.85)):
        for i in range(runs_per_target):
            stability = base - rng.uniform(0, 0.04)
            test_acc = 0.9 - 0.8 * (stability - 0.8) + rng.normal(0, 0.005)
            rows.append({"trial_id": f"vgg11-{target}{i}", "status": "completed", "dataset": "digits",
                         "model": "vgg11", "mode": "prune_during_training", "seed": i,
                         "mode_settings": json.dumps({"target": target}), "stability": stability,
                         "train_acc": 1.0, "test_acc": test_acc, "train_loss": 0.01})
    rows.append({"trial_id": "vgg11-scratch", "status": "completed", "dataset": "digits", "model": "vgg11",
                 "mode": "prune_during_training", "seed": 0, "mode_settings": json.dumps({"scratch": True}),
                 "stability": 1.0, "train_acc": 1.0, "test_acc": 0.7, "train_loss": 0.01})
    models = pd.DataFrame(rows).set_index("trial_id", drop=False).rename_axis(None)
    flat = pd.DataFrame({"hessian_top_k_sum": 100 * models["stability"] + rng.normal(0, 0.1, len(models))},
                        index=models.index)
    return models, flat


def test_run_claims_of_a_pruning_during_training_zoo():
    models, flat = stability_zoo()
    comparison = choose(parse_paper(STABILITY_PAPER, "toy2.yaml"), None, None, "analysis.paper")
    target = models["train_acc"] - models["test_acc"]
    zoo = Zoo(models=models, measures=flat, target="gap", target_series=target, axes=[])
    results = compare(comparison, zoo).set_index("claim")
    chosen = models[models["mode_settings"].str.contains('"S"|"L"')]
    assert results.loc["r", "n"] == len(chosen) == 8
    assert results.loc["r", "genzoo_value"] == pytest.approx(np.corrcoef(chosen["stability"], chosen["test_acc"])[0, 1])
    assert results.loc["r", "se"] == pytest.approx(1 / math.sqrt(8 - 2))
    assert results.loc["r", "verdict"] == REPRODUCED
    assert results.loc["tau_gap", "genzoo_value"] == pytest.approx(
        stats.kendalltau(models["stability"], target).statistic)
    assert results.loc["flat", "verdict"] == REPRODUCED and results.loc["flat", "n"] == 13
    by_target = {t: models.loc[models["mode_settings"].str.contains(f'"{t}"'), "test_acc"] for t in "SL"}
    assert results.loc["L_minus_S", "genzoo_value"] == pytest.approx(by_target["L"].mean() - by_target["S"].mean())
    assert results.loc["L_minus_S", "verdict"] == REPRODUCED
    assert results.loc["noise", "reason"] == "not tested: no run with intervention=gaussian"


def test_two_runs_per_group_cannot_give_an_interval():
    models, flat = stability_zoo(runs_per_target=2)
    comparison = choose(parse_paper(STABILITY_PAPER, "toy2.yaml"), None, None, "analysis.paper")
    zoo = Zoo(models=models, measures=flat, target="gap", target_series=models["train_acc"] - models["test_acc"],
              axes=[])
    row = compare(comparison, zoo).set_index("claim").loc["L_minus_S"]
    assert row["verdict"] == INCONCLUSIVE
    assert row["reason"] == "no interval (2 and 2 runs; an interval needs 3 in each group)"


# ------------------------------------------------------------------ the third paper: IMP runs

def imp_zoo(seeds=(0, 1, 2), noises=(0.0, 0.3), with_el2n=True):
    """Test error per level: a dip at level 2 that deepens with noise; extended dense training is
    worse than IMP by 0.02 under noise; a width series worse than IMP by 0.01."""
    rng = np.random.default_rng(1)
    rows, el2n = [], []
    curve = np.array([0.0, -0.01, -0.03, -0.01, 0.02])
    for noise, seed in itertools.product(noises, seeds):
        for mode in ("imp", "extended_dense"):
            trial = f"lenet-{mode}-{noise}-{seed}"
            for level in range(5):
                error = 0.1 + noise / 2 + curve[level] * (1 + 5 * noise) + rng.normal(0, 0.001)
                if mode == "extended_dense":
                    error = 0.1 + noise / 2 + 0.02 * noise + rng.normal(0, 0.001)
                model_id = f"level_{level:02d}"
                rows.append({"trial_id": trial, "model_id": model_id, "mode": mode,
                             "model": "lenet_300_100", "dataset": "digits", "label_noise": noise, "seed": seed,
                             "status": "completed", "test_acc": 1 - error, "train_acc": 1.0,
                             "train_loss": 0.01 + noise * 0.1 * level})
                if with_el2n and mode == "imp":
                    for i in range(20):
                        noisy = i < 20 * noise
                        el2n.append({"trial_id": trial, "model_id": model_id, "index": i, "noisy": noisy,
                                     "loss": 0.1 + (0.3 * level if noisy else 0.0)})
        for width in (100, 200, 300):
            trial = f"lenet-w{width}-{noise}-{seed}"
            rows.append({"trial_id": trial, "model_id": "final", "mode": "standard",
                         "model": "lenet_300_100", "dataset": "digits", "label_noise": noise, "seed": seed,
                         "status": "completed", "width": width, "train_acc": 1.0, "train_loss": 0.01,
                         "test_acc": 1 - (0.1 + noise / 2 + curve[2] * (1 + 5 * noise) + 0.01 + 0.001 * width / 100)})
    models = index_by_model(pd.DataFrame(rows))
    return models, {"el2n": pd.DataFrame(el2n)} if with_el2n else {}


IMP_PAPER = {
    "paper": "toy3", "title": "IMP", "citation": "Toy",
    "experiments": {"imp": {"title": "Sections 3-5", "protocol": {"dataset": ["digits"]}, "claims": [
        {"id": s, "ref": "Section 4", "statistic": stat, **({"noise": n} if n else {}), "direction": d}
        for s, stat, n, d in (
            ("improvement", "imp_improvement", "noisy", "positive"),
            ("grows", "imp_improvement_vs_noise", None, "positive"),
            ("clean_loss", "imp_train_loss_change", "clean", "negative"),
            ("noisy_loss", "imp_train_loss_change", "noisy", "positive"),
            ("gap", "imp_noisy_gap_change", "noisy", "positive"),
            ("extended", "imp_extended_minus_imp", "noisy", "positive"),
            ("width", "imp_width_minus_imp", "clean", "positive"))]}}}


def _imp_results(models, tables):
    comparison = choose(parse_paper(IMP_PAPER, "toy3.yaml"), None, None, "analysis.paper")
    zoo = Zoo(models=models, measures=pd.DataFrame(index=models.index), target="test_error",
              target_series=1 - models["test_acc"], axes=[], tables=tables)
    return compare(comparison, zoo).set_index("claim")


def test_the_optimal_level_is_chosen_on_the_other_seeds():
    models, tables = imp_zoo()
    runs = imp_runs(models, tables["el2n"])
    imp = models[models["mode"] == "imp"].assign(level=lambda f: f["model_id"].str[6:].astype(int),
                                                error=lambda f: 1 - f["test_acc"])
    for row in runs.itertuples():
        group = imp[(imp["label_noise"] == row.label_noise)]
        others = group[group["seed"] != row.seed].groupby("level")["error"].mean()
        level = others.idxmin()
        mine = group[group["seed"] == row.seed].set_index("level")["error"]
        assert row.level == level
        assert row.improvement == pytest.approx(mine[0] - mine[level])
    assert set(runs["level"]) == {2.0}


def test_imp_claims_with_three_seeds():
    results = _imp_results(*imp_zoo())
    for claim in ("improvement", "noisy_loss", "gap", "extended", "width"):
        assert results.loc[claim, "verdict"] == REPRODUCED, (claim, results.loc[claim, "reason"])
    assert results.loc["gap", "genzoo_value"] == pytest.approx(0.6)  # 0.3 per level on noisy examples, level 2
    assert results.loc["extended", "genzoo_value"] == pytest.approx(0.02 * 0.3 + 0.03 * 2.5, abs=0.003)
    assert results.loc["width", "genzoo_value"] == pytest.approx(0.011, abs=0.002)
    # without noise the training loss does not change with the level: no sign, interval at 0
    assert results.loc["clean_loss", "verdict"] == INCONCLUSIVE


def test_two_seeds_cannot_settle_the_label_noise_claims_and_say_so():
    results = _imp_results(*imp_zoo(seeds=(0, 1)))
    row = results.loc["improvement"]
    assert row["verdict"] == INCONCLUSIVE and row["n"] == 2 and row["too_small"]
    assert row["reason"] == "no interval (2 runs; an interval needs at least 3)"
    one_seed = _imp_results(*imp_zoo(seeds=(0,)))
    assert one_seed.loc["improvement", "reason"] == (
        "not tested: needs IMP runs of at least 2 seeds per benchmark and noise level (the optimal level is "
        "chosen on the other seeds)")
    no_el2n = _imp_results(*imp_zoo(with_el2n=False))
    assert no_el2n.loc["gap", "reason"].startswith("not tested: needs the el2n family's per-example losses")


# ------------------------------------------------------------------ claim files

def _paper_with(claim):
    document = json.loads(json.dumps(PAPER))
    document["experiments"]["grid"]["claims"] = [claim]
    return document


@pytest.mark.parametrize("claim, message", [
    ({"id": "a", "ref": "T1", "statistic": "spearman", "measure": "m", "value": 0.1},
     r"^toy\.yaml: experiments\.grid\.claims\[0\] \(a\)\.statistic: got 'spearman', allowed: kendall_tau"),
    ({"id": "a", "ref": "T1", "statistic": "psi_axis", "measure": "m", "value": 0.1},
     r"\(a\)\.axis: missing; statistic psi_axis needs measure, axis$"),
    ({"id": "a", "ref": "T1", "statistic": "kendall_tau", "measure": "m"},
     r"\(a\): needs the paper's value or its direction"),
    ({"id": "a", "ref": "T1", "statistic": "kendall_tau", "measure": "m", "value": 0.1, "direction": "negative"},
     r"\(a\)\.direction: negative disagrees with value 0\.1$"),
    ({"id": "a", "ref": "T1", "statistic": "cmi", "measure": "m", "direction": "positive"},
     r"\(a\)\.value: statistic cmi is compared by size: needs the paper's value > 0$"),
    ({"id": "a", "ref": "T1", "statistic": "kendall_tau", "measure": "m", "axis": "width", "value": 0.1},
     r"\(a\)\.axis: not a parameter of statistic kendall_tau"),
    ({"id": "a", "ref": "T1", "statistic": "kendall_tau", "measure": "m", "target": "accuracy", "value": 0.1},
     r"\(a\)\.target: got 'accuracy', allowed: gap, test_loss, test_error$"),
])
def test_a_bad_claim_is_a_one_line_error_naming_the_field(claim, message):
    with pytest.raises(AnalysisError, match=message):
        parse_paper(_paper_with(claim), "toy.yaml")


def test_duplicate_ids_and_unknown_experiments_are_refused():
    document = _paper_with({"id": "a", "ref": "T", "statistic": "psi", "measure": "m", "value": 0.1})
    document["experiments"]["grid"]["claims"] *= 2
    with pytest.raises(AnalysisError, match=r"claims\[1\]\.id: 'a' is used twice"):
        parse_paper(document, "toy.yaml")
    paper = parse_paper(PAPER, "toy.yaml")
    with pytest.raises(AnalysisError, match=r"^analysis\.paper\.experiments: 'x' is not an experiment of paper toy"):
        choose(paper, ["x"], None, "analysis.paper")


# ------------------------------------------------------------------ the report

def test_the_report_has_the_section_and_the_csv(tmp_path):
    trials, measures = first_paper_zoo(dataset="digits")
    comparison = choose(parse_paper(PAPER, "toy.yaml"), None, ["a laptop run"], "analysis.paper")
    result = analyze(trials, measures, tmp_path, hparams=AXES, paper=comparison)
    report = result.report_path.read_text()
    assert report.index("## Warnings") < report.index("## Against the paper") < report.index("## Tables")
    table = pd.read_csv(tmp_path / "against_paper.csv")
    assert list(table["claim"]) == [c["id"] for c in PAPER["experiments"]["grid"]["claims"]]
    assert table["verdict"].isin([REPRODUCED, CONTRADICTED, INCONCLUSIVE]).all()
    for claim in table["claim"]:
        assert f"| {claim} |" in report
    assert result.against_paper is not None and len(result.against_paper) == len(table)


def test_with_events_the_runs_are_the_stability_sections_with_the_papers_best_accuracy():
    from analysis.stability import per_model

    models, flat = stability_zoo()
    models = models.drop(columns="stability")
    rng = np.random.default_rng(5)
    events, epochs = [], []
    for trial in models.index:
        scratch = "scratch" in trial
        for event, epoch in enumerate((2, 3)):
            if not scratch:
                t_pre, t_post = 0.8, 0.8 - rng.uniform(0, 0.3)
                events.append({"trial_id": trial, "event": event, "epoch": epoch, "layer": "c", "rate": 0.1,
                               "filters_targeted": 3, "t_pre": t_pre, "t_post": t_post,
                               "stability": 1 - (t_pre - t_post) / t_pre})
        for epoch in (1, 2, 3, 4, 5):
            epochs.append({"trial_id": trial, "epoch": epoch, "train_acc": 1.0, "test_acc": rng.uniform(0.7, 0.9)})
    events, epochs = pd.DataFrame(events), pd.DataFrame(epochs)
    document = json.loads(json.dumps(STABILITY_PAPER))
    document["experiments"]["fig2"]["claims"][0]["y"] = "best_test_acc"
    comparison = choose(parse_paper(document, "toy2.yaml"), None, None, "analysis.paper")
    target = models["train_acc"] - models["test_acc"]
    zoo = Zoo(models=models, measures=flat, target="gap", target_series=target, axes=[],
              tables={"events": events, "epochs": epochs})
    row = compare(comparison, zoo).set_index("claim").loc["r"]
    runs = per_model(models, events, epochs).set_index("trial_id")
    chosen = runs[runs["target"].isin(["S", "L"])]
    assert row["n"] == 8
    assert row["genzoo_value"] == pytest.approx(np.corrcoef(chosen["stability"], chosen["best_test_acc"])[0, 1])
    without = Zoo(models=models, measures=flat, target="gap", target_series=target, axes=[], tables={"events": events})
    row = compare(comparison, without).set_index("claim").loc["r"]
    assert row["reason"].startswith("not tested: the runs have no best_test_acc")


def test_a_paper_value_within_its_own_noise_is_a_claim_of_no_association():
    from analysis.against_paper import paper_direction, paper_se
    from analysis.paper_claims import parse_claim

    document = json.loads(json.dumps(PAPER))
    protocol = document["experiments"]["grid"]["protocol"]
    protocol.update(tau_se=0.037, axis_values={"width": 3, "dropout": 3, "augment": 2, "weight_decay": 3, "depth": 3})
    document["experiments"]["grid"]["claims"].append(
        {"id": "flat_train_loss", "ref": "Table 1", "statistic": "kendall_tau", "measure": "wrong_way", "value": 0.0201})
    paper = parse_paper(document, "toy.yaml")
    experiment = paper.experiments["grid"]
    claims = {c.id: c for c in experiment.claims}
    assert paper_se(claims["tau"], experiment) == 0.037
    assert paper_se(claims["psi_width"], experiment) == pytest.approx(kendall_tau_se(3) / math.sqrt(324 / 3))
    ses = [kendall_tau_se(k) / math.sqrt(324 / k) for k in (3, 3, 2, 3, 3)]
    assert paper_se(claims["psi"], experiment) == pytest.approx(math.sqrt(sum(x * x for x in ses)) / 5)
    assert paper_direction(claims["tau"], experiment) == (1, "")
    direction, note = paper_direction(claims["flat_train_loss"], experiment)
    assert direction == 0 and note.startswith("the paper's 0.0201 is within 2 of its own standard errors (0.074) of 0")
    assert math.isnan(paper_se(parse_claim({"id": "x", "ref": "T", "statistic": "mean_difference", "y": "test_acc",
                                            "a": {"target": "L"}, "b": {"target": "S"}, "direction": "positive"},
                                           "c"), experiment))
    trials, measures = first_paper_zoo()
    _, zoo = _zoo_input(trials, measures)
    row = compare(choose(paper, None, None, "analysis.paper"), zoo).set_index("claim").loc["flat_train_loss"]
    assert row["verdict"] == CONTRADICTED and not row["too_small"]  # genzoo's wrong_way follows the gap strongly
    assert row["reason"].endswith("of 0, no association; interval excludes 0 where the paper saw no association")


def test_the_section_lists_the_protocol_differences_once():
    trials, measures = first_paper_zoo(dataset="digits")
    comparison, zoo = _zoo_input(trials, measures, differences=["40 epochs"])
    results = compare(comparison, zoo)
    text = "\n".join(section(comparison, zoo, results))
    assert "but the protocol differs (as listed above) |" in text
    assert "but the protocol differs: dataset digits" in results.set_index("claim").loc["tau_wrong", "reason"]

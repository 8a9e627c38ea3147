import itertools
import json

import numpy as np
import pandas as pd
import pytest

from analysis.checks import (
    CONVERGENCE_TAU,
    SPREAD_FACTOR,
    binomial_se,
    convergence_confounds,
    convergence_warnings,
    off_target_warnings,
    coverage_warnings,
    degenerate_warnings,
    min_distinct,
    partial_measures,
    target_noise_warnings,
    too_small_warnings,
    trained_to_common_loss,
)
from analysis.figures import value_scale
from analysis.report import analyze

AXES = ["width", "depth", "dropout"]


def zoo(gap_spread: float, train_acc: float, seed: int = 0):
    """24 models on a 3x2x2 grid x 2 seeds; the gap spreads by about ``gap_spread``."""
    rng = np.random.default_rng(seed)
    rows = []
    for width, depth, dropout, s in itertools.product([8, 16, 32], [2, 3], [0.0, 0.3], [0, 1]):
        gap = gap_spread * (width / 32 + 0.5 * depth - dropout + rng.normal(0, 0.3))
        rows.append({"trial_id": f"nin-{width}-{depth}-{dropout}-{s}", "status": "completed", "dataset": "digits",
                     "width": width, "depth": depth, "dropout": dropout, "seed": s,
                     "train_acc": train_acc, "test_acc": train_acc - gap, "train_loss": 0.1, "test_loss": 0.5 + gap})
    return pd.DataFrame(rows), rng


def row(trial_id, name, value, family, info=None):
    return {"trial_id": trial_id, "measure": name, "family": family, "value": value, "seconds": 0.1, "status": "ok",
            "error": None, "settings": json.dumps({"settings": {}, "info": info or {}})}


def healthy_store():
    trials, rng = zoo(gap_spread=0.08, train_acc=1.0)
    measures = []
    for t in trials.itertuples():
        gap = t.train_acc - t.test_acc
        measures.append(row(t.trial_id, "prunability", gap + rng.normal(0, 0.01), "prunability"))
        measures.append(row(t.trial_id, "effective_dimensionality", (2 + rng.random()) / 1000, "flatness",
                            {"top_k": 4, "num_parameters": 1000}))
        measures.append(row(t.trial_id, "hessian_trace", 100 + 50 * rng.random(), "flatness",
                            {"hutchinson_stderr": 1.0}))
        sigma = 0.1 + 0.05 * rng.random()
        measures.append(row(t.trial_id, "pac_bayes_flat", 1 / sigma ** 2, "pac_bayes",
                            {"pac_bayes_flat": {"sigma": sigma, "sigma_upper": sigma * 1.001}}))
    return trials, pd.DataFrame(measures)


def degenerate_store():
    trials, rng = zoo(gap_spread=0.002, train_acc=0.8)
    measures = []
    for position, t in enumerate(trials.itertuples()):
        measures.append(row(t.trial_id, "constant_measure", 3.0, "norms"))
        measures.append(row(t.trial_id, "random_prunability", 0.5 if position == 0 else 1.0, "random_prunability"))
        measures.append(row(t.trial_id, "three_values", float(position % 3), "norms"))
        measures.append(row(t.trial_id, "effective_dimensionality", (4.0 - 1e-6 * rng.random()) / 1000, "flatness",
                            {"top_k": 4, "num_parameters": 1000}))
        measures.append(row(t.trial_id, "eps_flatness", 1.0 + rng.random(), "flatness", {"eps_capped": True}))
        measures.append(row(t.trial_id, "hessian_trace", 100 + rng.random(), "flatness",
                            {"hutchinson_stderr": 5.0}))
        sigma = 0.1 + 0.001 * rng.random()
        measures.append(row(t.trial_id, "pac_bayes_flat", 1 / sigma ** 2, "pac_bayes",
                            {"pac_bayes_flat": {"sigma": sigma, "sigma_upper": 2 * sigma}}))
    return trials, pd.DataFrame(measures)


def test_no_warning_on_a_healthy_zoo(tmp_path):
    trials, measures = healthy_store()
    result = analyze(trials, measures, tmp_path, hparams=AXES, test_examples=360)
    assert result.warnings == ()
    report = result.report_path.read_text()
    assert "- none: the target's spread exceeds" in report
    assert "times one model's test-set standard error" in report and "(360 test images)" in report


def test_every_warning_fires_on_a_degenerate_zoo(tmp_path):
    trials, measures = degenerate_store()
    result = analyze(trials, measures, tmp_path, hparams=AXES, test_examples=360)
    text = "\n".join(result.warnings)
    assert "target spread below 2× test-set noise" in text and "360 test images" in text
    assert "underfit zoo" in text
    assert "constant_measure is constant (3 for all 24 models)" in text
    assert "random_prunability is nearly constant (1 for 23 of 24 models)" in text
    assert "three_values takes only 3 distinct values over 24 models" in text
    assert "effective_dimensionality is at its bound top_k / parameter count for 24 of 24 models" in text
    assert "eps_flatness hit its search cap" in text
    assert "hessian_trace: the Hutchinson standard error" in text
    assert "pac_bayes_flat: the Monte-Carlo σ-search half-bracket" in text
    report = result.report_path.read_text()
    assert all(f"- **{warning}**" in report for warning in result.warnings)
    assert all("\n" not in warning for warning in result.warnings)


def test_spread_rule_uses_the_binomial_standard_error_of_the_test_accuracy():
    assert binomial_se(0.89, 360) == pytest.approx(0.0165, abs=1e-4)
    assert min_distinct(32) == 10 and min_distinct(6) == 3
    wide = pd.DataFrame({"a": np.arange(12.0), "b": [1.0] * 11 + [2.0]})
    assert list(degenerate_warnings(wide)) == ["b"]


def test_log_axes_only_where_a_measure_spans_decades():
    assert value_scale([1.0, 2.0, 50.0]) == ("linear", {})
    assert value_scale([1.0, 10.0, 1000.0]) == ("log", {})
    assert value_scale([0.0, 3.0, 170_000.0]) == ("symlog", {"linthresh": 3.0})
    assert value_scale([np.nan, 5.0]) == ("linear", {})


# ---------------------------------------------------------------- the warnings of issue 21

def test_spread_rule_fires_below_twice_one_models_test_set_noise():
    noise = binomial_se(0.9, 360)
    test_acc = pd.Series([0.9] * 4)
    unit = np.array([-1.0, 1.0, -1.0, 1.0]) / np.std([-1.0, 1.0, -1.0, 1.0], ddof=1)
    assert SPREAD_FACTOR == 2
    for factor, fires in ((0.5, True), (1.0, True), (1.9, True), (2.1, False), (5.0, False)):
        found = target_noise_warnings("gap", pd.Series(0.1 + factor * noise * unit), test_acc, 360)
        assert bool(found) is fires, factor
        if fires:
            assert found[0].startswith("target spread below 2× test-set noise") and f"{factor:.1f} times" in found[0]
    assert target_noise_warnings("test_loss", pd.Series(unit), test_acc, 360) == []


def test_a_measure_on_part_of_the_zoo_is_left_out_of_the_tables_and_listed(tmp_path):
    trials, measures = healthy_store()
    complete = analyze(trials, measures, tmp_path / "complete", hparams=AXES, test_examples=360)
    assert not any(w.startswith("partial measure") for w in complete.warnings)
    few = [row(t, "prunability_v2", float(i), "prunability") for i, t in enumerate(trials.trial_id[:4])]
    partial = pd.concat([measures, pd.DataFrame(few)], ignore_index=True)
    result = analyze(trials, partial, tmp_path / "partial", hparams=AXES, test_examples=360)
    assert "prunability_v2" not in set(result.table1["measure"]) and "prunability" in set(result.table1["measure"])
    assert ("partial measure: prunability_v2 computed on 4 of the 24 models; left out of Tables 1–3 "
            "(genzoo analyze --include-partial keeps them)") in result.warnings
    report = result.report_path.read_text()
    assert "Left out of Tables 1–3" in report and "| prunability_v2 | 4 | 24 |" in report
    kept = analyze(trials, partial, tmp_path / "kept", hparams=AXES, test_examples=360, include_partial=True)
    assert "prunability_v2" in set(kept.table1["measure"])
    assert any("kept in Tables 1–3 (--include-partial)" in w for w in kept.warnings)


def test_coverage_warnings_group_a_family():
    partial = {"margin/block1/q1": 4, "margin/block1/q2": 4, "margin/block2/q1": 5, "prunability": 10}
    assert partial_measures(pd.DataFrame({"a": [1.0, np.nan], "b": [1.0, 2.0]})) == {"a": 1}
    assert coverage_warnings(partial, 116) == [
        "partial measure: 3 measures of family margin computed on 4 to 5 of the 116 models; left out of Tables 1–3 "
        "(genzoo analyze --include-partial keeps them)",
        "partial measure: prunability computed on 10 of the 116 models; left out of Tables 1–3 "
        "(genzoo analyze --include-partial keeps them)"]
    assert coverage_warnings({}, 116) == []


def convergence_zoo(stop=None, reached=None):
    """24 models whose final training losses spread over three orders of magnitude; ``ranks_loss``
    follows the loss, ``ranks_gap`` the gap (independent of the loss)."""
    rng = np.random.default_rng(0)
    loss = np.geomspace(4e-4, 0.65, 24)
    gap = rng.permutation(np.linspace(0.05, 0.3, 24))
    models = pd.DataFrame({"train_loss": loss}, index=[f"m{i}" for i in range(24)])
    if stop is not None:
        models["stop_at_train_loss"] = stop
    if reached is not None:
        models["reached_target"] = reached
    wide = pd.DataFrame({"ranks_loss": -np.log(loss) + rng.normal(0, 0.1, 24),
                         "ranks_gap": gap + rng.normal(0, 0.001, 24),
                         "train_loss": loss}, index=models.index)
    return models, wide, pd.Series(gap, index=models.index)


def test_a_measure_ranking_convergence_is_flagged_in_a_zoo_not_trained_to_a_common_loss():
    models, wide, gap = convergence_zoo()
    assert not trained_to_common_loss(models)  # no stop_at_train_loss column: not set
    confounds = convergence_confounds(models, wide, gap).set_index("measure")
    assert bool(confounds.loc["ranks_loss", "confounded"]) and abs(confounds.loc["ranks_loss", "tau_train_loss"]) > CONVERGENCE_TAU
    assert not confounds.loc["ranks_gap", "confounded"]
    assert "train_loss" not in confounds.index  # the final training loss itself is exempt
    found = convergence_warnings(convergence_confounds(models, wide, gap), models, "gap")
    assert len(found) == 1 and found[0].startswith("confounded by convergence: 1 measure(s) follow the final "
                                                   "training loss")
    assert "final training losses 0.0004 to 0.65" in found[0] and found[0].endswith("with the gap)")
    assert "ranks_loss (τ -1.00 with the training loss" in found[0] and "ranks_gap" not in found[0]


def test_no_convergence_warning_in_a_zoo_trained_to_a_common_loss():
    for stop, reached, common in ((0.01, True, True), (None, None, False), (0.01, False, False)):
        models, wide, gap = convergence_zoo(stop=stop, reached=reached)
        assert trained_to_common_loss(models) is common
        assert bool(convergence_warnings(convergence_confounds(models, wide, gap), models, "gap")) is (not common)
    models, wide, gap = convergence_zoo(stop=[0.01] * 12 + [0.1] * 12)
    assert not trained_to_common_loss(models)


def test_a_zoo_whose_capped_models_end_within_a_factor_2_of_the_target_is_trained_to_a_common_loss():
    # 4 models: two reached 0.05 (one overshot to 0.02), two hit the cap at 0.08 and 0.12.
    models = pd.DataFrame({"stop_at_train_loss": 0.05, "train_loss": [0.045, 0.02, 0.08, 0.12],
                           "reached_target": [True, True, False, False]}, index=list("abcd"))
    assert not trained_to_common_loss(models)  # d ended 2.4 times above the target
    assert trained_to_common_loss(models.drop(index="d"))
    (warning,) = off_target_warnings(models)
    assert warning == ("off target: 2 of 4 models ended training outside a factor 2 of their stop_at_train_loss: "
                       "b (0.02 for 0.05), d (0.12 for 0.05)")
    assert off_target_warnings(models.loc[["a", "c"]]) == []
    assert off_target_warnings(models.drop(columns="stop_at_train_loss")) == []
    assert off_target_warnings(models.assign(stop_at_train_loss=None)) == []


def test_too_small_warning_names_the_claims_a_zoo_cannot_test():
    results = pd.DataFrame({"experiment": ["demogen"] * 3 + ["imp"] * 2, "claim": ["a", "b", "c", "d", "e"],
                            "paper_value": [0.158, -0.001, 0.65, np.nan, np.nan],
                            "detectable": [0.25, 0.25, 0.25, np.nan, 0.1], "n": [32, 32, 32, 2, 12],
                            "too_small": [True, True, False, True, False]})
    found = too_small_warnings(results)
    assert found == ["zoo too small for 2 of the 3 claims of demogen: an effect of the paper's size is below 2 "
                     "standard errors of the statistic, or fewer than 3 models or runs give no interval, e.g. "
                     "a (|0.158| < 0.25), b (|-0.001| < 0.25)",
                     "zoo too small for 1 of the 2 claims of imp: an effect of the paper's size is below 2 standard "
                     "errors of the statistic, or fewer than 3 models or runs give no interval, e.g. d (n = 2)"]
    assert too_small_warnings(results.assign(too_small=False)) == []

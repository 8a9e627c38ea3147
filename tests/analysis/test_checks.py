import itertools
import json

import numpy as np
import pandas as pd
import pytest

from analysis.checks import binomial_se, degenerate_warnings, min_distinct
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
    trials, rng = zoo(gap_spread=0.05, train_acc=1.0)
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
    assert "target spread below test-set noise" in text and "360 test images" in text
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

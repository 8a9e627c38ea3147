"""The robust sign-error analysis (Dziugaite et al. 2020): against a brute-force enumeration of
every pair of models on small synthetic zoos, hand-checkable measures, the Monte Carlo noise
filter, the effective-sample-size rule, and the report section."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from analysis import sign_error as se
from analysis.report import analyze


def synthetic(seeds=3, widths=(8, 16, 32), depths=(2, 3), seed=0, model_ids=("final",)):
    """Models over a width × depth grid with ``seeds`` replicates, a gap and three measures."""
    rng = np.random.default_rng(seed)
    rows = []
    for width, depth, s, model_id in itertools.product(widths, depths, range(seeds), model_ids):
        gap = 0.02 * math.log2(width) - 0.03 * depth + rng.normal(0, 0.03)
        rows.append({"width": width, "depth": depth, "seed": s, "model_id": model_id, "gap": gap})
    models = pd.DataFrame(rows)
    models.index = [f"m{i}" for i in range(len(models))]
    measures = pd.DataFrame({
        "noisy": models["gap"] + rng.normal(0, 0.05, len(models)),
        "width_only": models["width"].astype(float),
        "rounded": models["gap"].round(1),
    }, index=models.index)
    return models, measures


def brute_force(models, measures, axes, test_examples, min_weight=se.MIN_WEIGHT, min_ess=se.MIN_ESS):
    """Every unordered pair of models, coupled when their configurations differ in exactly one
    axis (same model_id), accumulated per environment (the unordered pair of configurations)."""
    envs = {}
    for a, b in itertools.combinations(models.index, 2):
        if models.at[a, "model_id"] != models.at[b, "model_id"]:
            continue
        differing = [x for x in axes if models.at[a, x] != models.at[b, x]]
        if len(differing) != 1:
            continue
        config_a = tuple(models.loc[a, axes]) + (models.at[a, "model_id"],)
        config_b = tuple(models.loc[b, axes]) + (models.at[b, "model_id"],)
        key = (differing[0], frozenset([config_a, config_b]))
        g1, g2 = models.at[a, "gap"], models.at[b, "gap"]
        d = abs(g2 - g1)
        if test_examples is None:
            w = 1.0
        else:
            p = max(0.0, 1.0 - 2.0 * math.exp(-2.0 * test_examples * (d / 2.0) ** 2)) ** 2
            w = max(p - min_weight, 0.0)
        entry = envs.setdefault(key, {name: [] for name in measures.columns})
        for name in measures.columns:
            c1, c2 = measures.at[a, name], measures.at[b, name]
            if c1 == c2 or g1 == g2:
                loss = 0.5
            elif (c2 > c1) == (g2 > g1):
                loss = 0.0
            else:
                loss = 1.0
            entry[name].append((w, loss))
    result = {}
    for (axis, _), entry in envs.items():
        for name, samples in entry.items():
            total = sum(w for w, _ in samples)
            squares = sum(w * w for w, _ in samples)
            psi = sum(w * loss for w, loss in samples) / total if total > 0 else math.nan
            ess = total ** 2 / squares if squares > 0 else 0.0
            result.setdefault((name, axis), []).append((psi, total, ess, total > 0 and ess >= min_ess - 1e-9))
    return result


def rows_of(table, name, axis):
    part = table[(table["measure"] == name) & (table["hyperparameter"] == axis)]
    return sorted(zip(part["sign_error"], part["weight"], part["ess"], part["kept"]),
                  key=lambda r: (np.nan_to_num(r[0], nan=-1), r[1], r[2]))


@pytest.mark.parametrize("test_examples, min_ess, seeds", [(None, 12.0, 4), (300, 2.0, 3), (2000, 3.0, 3), (5000, 2.0, 3)])
def test_environment_sign_errors_equal_a_brute_force_enumeration(test_examples, min_ess, seeds):
    models, measures = synthetic(seeds=seeds)
    axes = ["width", "depth"]
    table = se.environment_sign_errors(models, measures, models["gap"], axes, test_examples, min_ess=min_ess)
    expected = brute_force(models, measures, axes, test_examples, min_ess=min_ess)
    # 3 widths → 3 pairs of values × 2 depths; 2 depths → 1 pair × 3 widths.
    assert len(table) == len(measures.columns) * (3 * 2 + 1 * 3)
    for name in measures.columns:
        for axis in axes:
            got = rows_of(table, name, axis)
            want = sorted(expected[(name, axis)], key=lambda r: (np.nan_to_num(r[0], nan=-1), r[1], r[2]))
            assert len(got) == len(want)
            for (psi, weight, ess, kept), (psi_b, weight_b, ess_b, kept_b) in zip(got, want):
                assert psi == pytest.approx(psi_b, nan_ok=True)
                assert weight == pytest.approx(weight_b)
                assert ess == pytest.approx(ess_b)
                assert bool(kept) == kept_b
            # The summaries: mean, 90th percentile and max over the kept environments.
            summary = se.summarize(table, axes)
            row = summary[(summary["measure"] == name) & (summary["hyperparameter"] == axis)].iloc[0]
            kept_values = [psi for psi, _, _, kept in want if kept]
            assert row["environments"] == len(want) and row["kept"] == len(kept_values)
            if kept_values:
                assert row["mean"] == pytest.approx(np.mean(kept_values))
                assert row["p90"] == pytest.approx(np.percentile(kept_values, 90))
                assert row["max"] == pytest.approx(max(kept_values))
            else:
                assert math.isnan(row["mean"]) and math.isnan(row["max"])
    if test_examples == 2000:
        # The filter removes some pairs and the ESS rule some environments: both paths are exercised.
        assert (table["weight"] == 0).any() and table["kept"].any() and not table["kept"].all()


def test_all_pools_every_hyperparameter():
    models, measures = synthetic(seeds=4)
    summary, table = se.sign_error_table(models, measures, models["gap"], ["width", "depth"], None)
    for name in measures.columns:
        row = summary[(summary["measure"] == name) & (summary["hyperparameter"] == se.ALL)].iloc[0]
        values = table.loc[(table["measure"] == name) & table["kept"], "sign_error"]
        assert row["environments"] == 9 and row["kept"] == len(values) == 9
        assert row["mean"] == pytest.approx(values.mean()) and row["max"] == pytest.approx(values.max())


def test_hand_checkable_measures():
    """The gap itself has sign error 0 everywhere, its negation 1, a constant ½ (ties are a coin
    flip); with 4 seeds every environment has 16 samples of weight 1 (ESS 16 ≥ 12)."""
    models, _ = synthetic(seeds=4)
    measures = pd.DataFrame({"gap": models["gap"], "minus_gap": -models["gap"], "constant": 1.0}, index=models.index)
    summary, table = se.sign_error_table(models, measures, models["gap"], ["width", "depth"], None)
    assert (table["pairs"] == 16).all() and (table["ess"] == 16).all() and table["kept"].all()
    by = summary.set_index(["measure", "hyperparameter"])
    for axis in ("width", "depth", se.ALL):
        assert tuple(by.loc[("gap", axis), ["mean", "p90", "max"]]) == (0.0, 0.0, 0.0)
        assert tuple(by.loc[("minus_gap", axis), ["mean", "p90", "max"]]) == (1.0, 1.0, 1.0)
        assert tuple(by.loc[("constant", axis), ["mean", "p90", "max"]]) == (0.5, 0.5, 0.5)


def test_one_environment_by_hand():
    """Two configurations (width 8 and 16), two seeds each: 4 coupled pairs, weights 1."""
    models = pd.DataFrame({"width": [8, 8, 16, 16], "gap": [0.1, 0.2, 0.3, 0.15]}, index=list("abcd"))
    # Pairs (first, second): (a,c) Δg>0, (a,d) Δg>0, (b,c) Δg>0, (b,d) Δg<0.
    measure = pd.DataFrame({"c": [1.0, 2.0, 3.0, 3.0]}, index=models.index)
    # ΔC: (a,c) +, (a,d) +, (b,c) +, (b,d) + → errors 0, 0, 0, 1 → ψ_e = 1/4.
    table = se.environment_sign_errors(models, measure, models["gap"], ["width"], None, min_ess=4)
    assert table.loc[0, "sign_error"] == pytest.approx(0.25)
    assert table.loc[0, "pairs"] == 4 and table.loc[0, "ess"] == 4 and bool(table.loc[0, "kept"])
    assert table.loc[0, "environment"] == "width 8 → 16"
    assert not se.environment_sign_errors(models, measure, models["gap"], ["width"], None)["kept"].any()  # ESS 4 < 12


def test_sign_error_values():
    assert se.sign_error(1.0, 2.0, 0.1, 0.3) == 0.0
    assert se.sign_error(2.0, 1.0, 0.1, 0.3) == 1.0
    assert se.sign_error(1.0, 1.0, 0.1, 0.3) == 0.5
    assert se.sign_error(1.0, 2.0, 0.3, 0.3) == 0.5


def test_hoeffding_weight_and_the_noise_filter():
    # (1 − 2 e^{−n d²/2})²: n = 1000, d = 0.1 → (1 − 2e^{−5})².
    assert se.hoeffding_weight(0.1, 1000) == pytest.approx((1 - 2 * math.exp(-5)) ** 2)
    assert se.hoeffding_weight(-0.1, 1000) == se.hoeffding_weight(0.1, 1000)
    assert se.hoeffding_weight(0.0, 1000) == 0.0
    # The weight crosses ½ where 1 − 2 e^{−n d²/2} = √½: d ≈ 0.0694 for the demo's 797 test examples.
    crossing = math.sqrt(2 * math.log(2 / (1 - math.sqrt(0.5))) / 797)
    assert crossing == pytest.approx(0.0694, abs=1e-4)
    assert se.pair_weight(crossing * 0.99, 797) == 0.0
    assert se.pair_weight(crossing * 1.01, 797) > 0.0
    assert se.pair_weight(0.5, 797) == pytest.approx(0.5)
    assert se.pair_weight(0.0, None) == 1.0
    # A pair within the noise is left out of its environment; one outside it decides ψ_e alone.
    models = pd.DataFrame({"width": [8, 8, 16, 16], "gap": [0.10, 0.30, 0.12, 0.05]}, index=list("abcd"))
    # Pairs: (a,c) d=.02 noise; (a,d) d=.05 noise; (b,c) d=.18 kept; (b,d) d=.25 kept; both Δg < 0.
    measure = pd.DataFrame({"c": [0.0, 0.0, 1.0, -1.0]}, index=models.index)  # ΔC: (b,c) + wrong, (b,d) − right
    table = se.environment_sign_errors(models, measure, models["gap"], ["width"], 797, min_ess=1)
    w_bc, w_bd = se.pair_weight(0.18, 797), se.pair_weight(0.25, 797)
    assert table.loc[0, "weight"] == pytest.approx(w_bc + w_bd)
    assert table.loc[0, "sign_error"] == pytest.approx(w_bc / (w_bc + w_bd))
    assert table.loc[0, "ess"] == pytest.approx((w_bc + w_bd) ** 2 / (w_bc ** 2 + w_bd ** 2))
    # All within the noise: no weight, no ψ_e, not kept.
    close = models.assign(gap=[0.10, 0.11, 0.12, 0.13])
    table = se.environment_sign_errors(close, measure, close["gap"], ["width"], 797, min_ess=1)
    assert table.loc[0, "weight"] == 0 and math.isnan(table.loc[0, "sign_error"]) and not table.loc[0, "kept"]


def test_seeds_and_model_ids_are_never_coupled_and_missing_values_are_skipped():
    models, measures = synthetic(seeds=2, widths=(8, 16), depths=(2,), model_ids=("final", "level_01"))
    environments, pairs = se.coupled_pairs(models, ["width"])
    # One environment per model_id (width 8 → 16), each of 2 × 2 seed pairs.
    assert list(environments["environment"]) == ["width 8 → 16 | model_id=final", "width 8 → 16 | model_id=level_01"]
    assert len(pairs) == 8
    first, second = models.iloc[pairs["first"]], models.iloc[pairs["second"]]
    assert (first["model_id"].to_numpy() == second["model_id"].to_numpy()).all()
    assert (first["width"].to_numpy() != second["width"].to_numpy()).all()
    measures.iloc[0, 0] = np.nan
    table = se.environment_sign_errors(models, measures, models["gap"], ["width"], None, min_ess=1)
    assert list(table.loc[table["measure"] == "noisy", "pairs"]) == [2, 4]
    assert list(table.loc[table["measure"] == "width_only", "pairs"]) == [4, 4]


def test_cdf():
    assert list(se.cdf([0.0, 0.5, 0.5, 1.0], [0.0, 0.4, 0.5, 1.0])) == [0.25, 0.25, 0.75, 1.0]
    assert np.isnan(se.cdf([], [0.5])).all()


def store_frames(seeds):
    rng = np.random.default_rng(1)
    trials, rows = [], []
    for i, (width, depth, s) in enumerate(itertools.product((8, 16), (2, 3), range(seeds))):
        test_acc = 0.95 - 0.2 * (width == 8) - 0.1 * (depth == 3) + rng.normal(0, 0.01)
        trial_id = f"t{i:02d}"
        trials.append({"trial_id": trial_id, "model_id": "final", "status": "completed", "width": width,
                       "depth": depth, "seed": s, "train_acc": 1.0, "test_acc": test_acc, "train_loss": 0.01})
        for name, value in (("good", 1 - test_acc + rng.normal(0, 0.01)), ("bad", test_acc), ("size", width * depth)):
            rows.append({"trial_id": trial_id, "model_id": "final", "measure": name, "value": float(value),
                         "status": "ok"})
    return pd.DataFrame(trials), pd.DataFrame(rows)


def test_the_report_has_the_sign_error_section_table_and_figure(tmp_path):
    trials, measures = store_frames(seeds=4)
    result = analyze(trials, measures, tmp_path, hparams=("width", "depth"), test_examples=2000)
    report = result.report_path.read_text()
    assert "### Robust sign error (Dziugaite et al. 2020)" in report
    assert report.index("### Table 1") < report.index("### Robust sign error") < report.index("## Figures")
    assert "![cumulative distribution of the sign error" in report
    for name in ("sign_error.md", "sign_error.csv", "sign_error_environments.csv", "figures/sign_error_cdf.png"):
        assert (tmp_path / name).exists(), name
    summary = pd.read_csv(tmp_path / "sign_error.csv")
    by = summary.set_index(["measure", "hyperparameter"])
    assert by.loc[("good", "all"), "max"] == 0.0 and by.loc[("bad", "all"), "mean"] == 1.0
    assert by.loc[("good", "all"), "kept"] == 4  # 2 width pairs + 2 depth pairs, 16 samples each


def test_a_single_seed_zoo_says_why_its_table_is_empty_and_shows_the_unfiltered_one_labelled(tmp_path):
    trials, measures = store_frames(seeds=1)
    result = analyze(trials, measures, tmp_path, hparams=("width", "depth"), test_examples=2000)
    report = result.report_path.read_text()
    assert "No environment reaches the effective sample size 12" in report
    assert not (tmp_path / "figures" / "sign_error_cdf.png").exists()
    assert any(note.startswith("sign error: no coupled environment") and "not the paper's rule" in note
               for note in result.notes)
    # Beside it, labelled: every pair at weight 1, every environment kept; equal to brute force.
    assert "**Unfiltered, not the paper's rule.**" in report and "4 environments of 1 pair(s) each" in report
    assert (tmp_path / "figures" / "sign_error_cdf_unfiltered.png").exists()
    unfiltered = pd.read_csv(tmp_path / "sign_error_unfiltered.csv").set_index(["measure", "hyperparameter"])
    models = trials.assign(gap=trials["train_acc"] - trials["test_acc"]).set_index("trial_id")
    wide = measures.pivot(index="trial_id", columns="measure", values="value")
    expected = brute_force(models, wide, ["width", "depth"], None, min_ess=1.0)
    for (name, axis), rows in expected.items():
        values = [psi for psi, _, _, kept in rows if kept]
        assert unfiltered.loc[(name, axis), "kept"] == len(values) == 2
        assert unfiltered.loc[(name, axis), "mean"] == pytest.approx(np.mean(values))
        assert unfiltered.loc[(name, axis), "max"] == pytest.approx(np.max(values))
    assert unfiltered.loc[("good", "all"), "mean"] == 0.0 and unfiltered.loc[("bad", "all"), "mean"] == 1.0


def test_the_options_defaults_are_the_papers_and_reach_the_section(tmp_path):
    from analysis.errors import AnalysisError
    from analysis.options import AnalysisOptions

    assert AnalysisOptions().sign_error_min_weight == se.MIN_WEIGHT == 0.5
    assert AnalysisOptions().sign_error_min_ess == se.MIN_ESS == 12.0
    trials, measures = store_frames(seeds=1)
    analyze(trials, measures, tmp_path, hparams=("width", "depth"), test_examples=2000, sign_error_min_ess=1)
    summary = pd.read_csv(tmp_path / "sign_error.csv").set_index(["measure", "hyperparameter"])
    assert summary.loc[("good", "all"), "kept"] > 0 and (tmp_path / "figures" / "sign_error_cdf.png").exists()
    assert "is at least 1." in result_text(tmp_path)
    for bad in ({"sign_error_min_ess": 0.5}, {"sign_error_min_weight": 1.0}):
        with pytest.raises(AnalysisError, match=f"^{next(iter(bad))}: got"):
            analyze(trials, measures, tmp_path / "bad", hparams=("width", "depth"), test_examples=2000, **bad)


def result_text(folder):
    return (folder / "report.md").read_text()


def test_an_environment_with_more_pairs_than_the_cap_is_estimated_from_a_seeded_sample():
    models, measures = synthetic(seeds=60, widths=(8, 16), depths=(2,))  # 3,600 pairs
    target = models["gap"]
    full = se.environment_sign_errors(models, measures, target, ["width", "depth"], None)
    capped = se.environment_sign_errors(models, measures, target, ["width", "depth"], None, max_pairs=900)
    again = se.environment_sign_errors(models, measures, target, ["width", "depth"], None, max_pairs=900)
    pd.testing.assert_frame_equal(capped, again)  # seeded: the same sample every time
    assert set(full["pairs"]) == {3600} and set(capped["pairs"]) == {900}
    # The sampling error of a mean of 900 losses in [0, 1]: at most 0.5/30; four of them is generous.
    assert np.allclose(capped["sign_error"], full["sign_error"], atol=4 * 0.5 / 30)
    _, pairs = se.coupled_pairs(models, ["width", "depth"], max_pairs=900)
    assert len(pairs) == 900  # linear in the models, not in the square of the seeds

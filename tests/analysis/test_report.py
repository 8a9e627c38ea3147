import itertools
import json
import re

import numpy as np
import pandas as pd
import pytest

from analysis.errors import AnalysisError
from analysis.kendall import kendall_tau
from analysis.report import analyze

MARGIN_STATS = ("q1", "median", "q3", "upper_fence", "lower_fence")


def synthetic_store(seed: int = 0):
    """A 3x2x2 grid (width, depth, dropout) x 2 seeds of completed trials plus one diverged
    trial, with prunability, a random measure, an always-failing measure, margin features,
    pruning curves and EL2N scores."""
    rng = np.random.default_rng(seed)
    rows = []
    for width, depth, dropout, s in itertools.product([8, 16, 32], [2, 3], [0.0, 0.3], [0, 1]):
        test_acc = 0.80 + 0.002 * width - 0.02 * depth + 0.1 * dropout + rng.normal(0, 0.01)
        rows.append({
            "trial_id": f"nin-{width}-{depth}-{dropout}-{s}", "status": "completed", "model": "nin",
            "width": width, "depth": depth, "dropout": dropout, "seed": s, "lr": 0.05,
            "label_noise": 0.2 if s else 0.0,
            "train_acc": 1.0, "test_acc": test_acc, "train_loss": 0.01, "test_loss": 1.5 - test_acc,
        })
    rows.append({"trial_id": "nin-diverged", "status": "diverged", "model": "nin", "width": 8, "depth": 2,
                 "dropout": 0.0, "seed": 2, "lr": 0.05, "label_noise": 0.0, "train_acc": np.nan,
                 "test_acc": np.nan, "train_loss": np.nan, "test_loss": np.nan})
    trials = pd.DataFrame(rows)
    completed = trials[trials.status == "completed"]
    measure_rows = []

    def add(trial_id, name, value, status="ok", error=None, settings=None):
        measure_rows.append({"trial_id": trial_id, "measure": name, "value": value, "seconds": 0.5,
                             "status": status, "error": error, "settings": json.dumps(settings or {})})

    for row in completed.itertuples():
        gap = row.train_acc - row.test_acc
        add(row.trial_id, "prunability", gap + rng.normal(0, 0.01), settings={"resolution": 0.01})
        add(row.trial_id, "random_measure", rng.normal())
        add(row.trial_id, "hessian_trace", np.nan, status="error", error="CUDA out of memory\ntraceback...")
        for layer in ("input", "block1"):
            for stat in MARGIN_STATS:
                add(row.trial_id, f"margin/{layer}/{stat}", -3 * gap + rng.normal(0, 0.05), settings={"subset": 500})
    add("nin-diverged", "prunability", 0.5)  # a diverged trial never enters the statistics
    measures = pd.DataFrame(measure_rows)

    curves = pd.DataFrame([
        {"trial_id": t, "kept_fraction": k, "intervention": i, "split": s,
         "loss": (1 - k) * (2.0 if i == "prune" else 1.0) + (0.3 if s == "test" else 0.0)}
        for t in completed.trial_id for k in (1.0, 0.5, 0.1) for i in ("prune", "perturb") for s in ("train", "test")
    ])
    el2n_rows = []
    for t in completed.trial_id:
        for index in range(60):
            noisy = index % 5 == 0
            score = rng.random() + (0.5 if noisy else 0.0)
            el2n_rows.append({"trial_id": t, "index": index, "score": score, "noisy": noisy, "loss": 2 * score})
    spectra = pd.DataFrame([{"trial_id": t, "rank": r, "eigenvalue": 10.0 / r} for t in completed.trial_id
                            for r in range(1, 5)])
    tables = {"pruning_curves": curves, "el2n": pd.DataFrame(el2n_rows), "hessian_eigenvalues": spectra}
    return trials, measures, tables


AXES = ["width", "depth", "dropout", "seed"]
SETTINGS = {"pac_bayes": {"draws": 3, "steps": 8}, "flatness": {"subset": 256}}


@pytest.fixture(scope="module")
def store():
    return synthetic_store()


@pytest.fixture(scope="module")
def result(store, tmp_path_factory):
    trials, measures, tables = store
    out = tmp_path_factory.mktemp("analysis")
    return analyze(trials, measures, out, tables=tables, experiment="synthetic", settings=SETTINGS,
                   hparams=AXES)


def test_analyze_writes_every_table_figure_and_the_report(result):
    out = result.report_path.parent
    for name in ("table1", "table2", "table3"):
        assert (out / f"{name}.csv").stat().st_size > 0
        assert (out / f"{name}.md").stat().st_size > 0
    figures = {p.name for p in (out / "figures").glob("*.png")}
    assert {"scatter_prunability.png", "scatter_random_measure.png", "scatter_normalized_margins.png",
            "scatter_best_margin_variable.png", "double_descent.png", "pruning_vs_perturbation.png",
            "el2n.png", "hessian_spectrum.png"} <= figures
    assert (out / "el2n_groups.csv").exists() and (out / "el2n_noisy.csv").exists()
    assert set(result.paths) >= {out / "report.md", out / "table1.csv", out / "figures" / "el2n.png"}
    assert all(p.exists() for p in result.paths)


def test_report_links_resolve_and_state_every_setting(result):
    out = result.report_path.parent
    report = result.report_path.read_text()
    links = re.findall(r"\]\(([^)]+)\)", report)
    assert links and all((out / link).exists() for link in links)
    for key, value in (("pac_bayes.draws", "3"), ("pac_bayes.steps", "8"), ("flatness.subset", "256")):
        assert f"`{key}`: `{value}`" in report
    assert '{"resolution": 0.01}' in report  # the settings recorded with the measure rows
    assert "CUDA out of memory" in report  # the failing measure is reported, not silently dropped
    assert "24 completed" in report and "1 diverged" in report


def test_table1_holds_each_measure_with_values_from_the_statistics(store, result):
    trials, measures, _ = store
    t1 = result.table1.set_index("measure")
    assert set(t1.index) == {"prunability", "random_measure", "normalized_margins", "best_margin_variable"}
    assert not any(name.startswith("margin/") for name in t1.index)
    completed = trials[trials.status == "completed"].sort_values("trial_id")
    gap = (completed.train_acc - completed.test_acc).to_numpy()
    prunability = measures[measures.measure == "prunability"].set_index("trial_id").value
    expected = kendall_tau(prunability.loc[completed.trial_id].to_numpy(), gap)
    assert t1.loc["prunability", "kendall_tau"] == pytest.approx(expected)
    assert t1.loc["prunability", "n_models"] == 24
    assert t1.loc["prunability", "kendall_tau"] > 0.5
    assert 0 <= t1.loc["random_measure", "cmi"] <= 1
    # seed is a replicate, not an axis, even when listed in hparams.
    assert result.axes == ("width", "depth", "dropout")
    assert list(result.table2.columns) == ["measure", "n_models", "width", "depth", "dropout", "kendall_tau", "psi",
                                           "psi_ci_low", "psi_ci_high"]
    assert set(result.table3.measure) == {"random_measure", "normalized_margins", "best_margin_variable"}
    assert "prunability" in result.table1_text and "kendall_tau" in result.table1_text


def test_analyze_twice_gives_byte_identical_files(store, tmp_path):
    trials, measures, tables = store
    first = analyze(trials, measures, tmp_path / "a", tables=tables, experiment="x", settings=SETTINGS, hparams=AXES)
    # Row order of the inputs must not matter.
    second = analyze(trials.sample(frac=1.0, random_state=1), measures.sample(frac=1.0, random_state=2),
                     tmp_path / "b", tables=tables, experiment="x", settings=SETTINGS, hparams=AXES)
    names = [p.relative_to(tmp_path / "a") for p in first.paths]
    assert names == [p.relative_to(tmp_path / "b") for p in second.paths]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_double_descent_zoo_gets_tau_against_test_loss_and_test_error(tmp_path):
    rng = np.random.default_rng(5)
    widths = [2, 4, 8, 16, 32]
    rows, measure_rows = [], []
    for width, s in itertools.product(widths, range(3)):
        test_loss = 2.0 + 0.5 * np.sin(width / 5) + rng.normal(0, 0.05)
        trial_id = f"mcnn-{width}-{s}"
        rows.append({"trial_id": trial_id, "status": "completed", "model": "mcnn", "width": width, "seed": s,
                     "train_acc": 1.0, "test_acc": 0.5 - 0.05 * test_loss, "train_loss": 0.0, "test_loss": test_loss})
        measure_rows.append({"trial_id": trial_id, "measure": "prunability", "value": test_loss + rng.normal(0, 0.1),
                             "seconds": 1.0, "status": "ok", "error": None, "settings": "{}"})
        for stat in MARGIN_STATS:
            measure_rows.append({"trial_id": trial_id, "measure": f"output_margin/{stat}", "value": rng.normal(),
                                 "seconds": 1.0, "status": "ok", "error": None, "settings": "{}"})
    result = analyze(pd.DataFrame(rows), pd.DataFrame(measure_rows), tmp_path, target="test_loss",
                     hparams=["width", "seed"])
    assert {"kendall_tau_test_loss", "kendall_tau_test_error"} <= set(result.table1.columns)
    row = result.table1.set_index("measure").loc["prunability"]
    assert row["kendall_tau_test_loss"] == pytest.approx(row["kendall_tau"])
    assert "output_margins" in set(result.table1.measure)
    assert (tmp_path / "figures" / "double_descent.png").exists()
    assert result.axes == ("width",)


def one_line_error(call):
    with pytest.raises(AnalysisError) as error:
        call()
    message = str(error.value)
    assert "\n" not in message
    return message


def test_too_small_zoo_unknown_target_and_missing_measures_are_one_line_errors(store, tmp_path):
    trials, measures, _ = store
    two = trials[trials.status == "completed"].head(2)
    assert "too small" in one_line_error(lambda: analyze(two, measures, tmp_path, hparams=AXES))
    assert "target" in one_line_error(lambda: analyze(trials, measures, tmp_path, target="accuracy", hparams=AXES))
    empty = measures.iloc[0:0]
    assert "measure stage" in one_line_error(lambda: analyze(trials, empty, tmp_path, hparams=AXES))
    failed = measures.assign(status="error")
    assert "no measure" in one_line_error(lambda: analyze(trials, failed, tmp_path, hparams=AXES))
    assert "hparams" in one_line_error(lambda: analyze(trials, measures, tmp_path, hparams=["nope"]))
    assert "missing column" in one_line_error(
        lambda: analyze(trials.drop(columns="status"), measures, tmp_path, hparams=AXES))


def test_figures_come_as_png_and_svg_with_overview_learning_curves_and_settings_csv(store, tmp_path):
    trials, measures, tables = store
    completed = trials[trials.status == "completed"]
    epochs = pd.DataFrame([{"trial_id": t, "epoch": e, "train_loss": 2.0 / e, "train_acc": 1 - 0.5 / e,
                            "test_loss": 2.5 / e, "test_acc": 0.9 - 0.5 / e}
                           for t in completed.trial_id for e in range(1, 6)])
    epochs.loc[epochs["epoch"] == 2, ["test_loss", "test_acc"]] = np.nan  # an epoch without evaluation
    # No label noise: the EL2N figure must not draw the empty noisy-versus-clean panels.
    clean = tables["el2n"].assign(noisy=False)
    result = analyze(trials, measures, tmp_path, tables={**tables, "epochs": epochs, "el2n": clean},
                     hparams=AXES, colour_by="dropout")
    figures = tmp_path / "figures"
    pngs = {p.stem for p in figures.glob("*.png")}
    assert pngs == {p.stem for p in figures.glob("*.svg")}
    assert {"overview", "learning_curves", "el2n"} <= pngs
    report = result.report_path.read_text()
    assert "coloured by `dropout`" in report
    assert "no label noise, so no noisy-versus-clean panels" in report
    assert "[Measure settings](measure_settings.csv)" in report and (tmp_path / "measure_settings.csv").exists()
    assert "the paper's s_τ" in report and "bootstrap" in report
    t1 = result.table1
    assert list(t1.columns[:8]) == ["measure", "n_models", "kendall_tau", "kendall_tau_se", "adjusted_r2", "cv_r2",
                                    "cmi", "cmi_pgdl"]
    row = t1.set_index("measure").loc["prunability"]
    assert row["kendall_tau_ci_low"] < row["kendall_tau"] < row["kendall_tau_ci_high"]
    assert row["adjusted_r2_ci_low"] < row["adjusted_r2"] < row["adjusted_r2_ci_high"]
    assert np.isnan(t1.set_index("measure").loc["normalized_margins", "adjusted_r2_ci_low"])  # a joint fit


def test_scatter_colour_defaults_to_the_axis_that_orders_the_target(result):
    # The synthetic gap falls with width most strongly (0.002 per unit of width).
    assert "coloured by `width`" in result.report_path.read_text()

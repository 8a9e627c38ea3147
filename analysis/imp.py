"""The ``imp`` report section: the third paper's analysis of iterative magnitude pruning.

Jin, Carbin, Roy, Frankle & Dziugaite 2022, *Pruning's effect on generalization through the lens
of training and regularization*. Every IMP level is a model of the zoo (``level_00`` dense, then 20% fewer
weights per level); ``extended_dense`` trials train the same schedule without pruning; a
width down-scaling series is standard training at several widths. Definitions used here:

- test error = 1 − test accuracy; weights remaining = 1 − sparsity (IMP), or a model's
  conv/linear weight count over the largest width's (width down-scaling).
- Optimal sparsity (Section 2): the level with the lowest test error of its run (the paper
  says validation error; genzoo's zoos hold out only the test set, so the test error is
  used — this selects on the test set and is optimistic by construction). Ties go to the
  lower level. The highest sparsity still better than dense: the sparsest level whose test
  error is strictly below the dense model's (none when no level is).
- The match rule (Section 2): two results differ if and only if the mean of their
  differences over the seeds is at least one standard deviation (ddof = 1) away from zero;
  otherwise they match. Fewer than two seeds: not decided.
- EL2N subgroups (Section 3, Figures 2 and 5): the training examples are split into M = 20
  groups of equal size by the rank of their EL2N score (the example of 0-based rank r among
  n is in group ⌊r·M/n⌋: when M does not divide n the sizes differ by at most one; ties
  keep the examples' order) (from the dense run's early
  checkpoint, the same for every level of a trial); per group, the mean training loss of
  the sparse model minus that of the dense model (``level_00``), at the optimal sparsity
  and at the highest sparsity better than dense; then the mean over seeds.

Inputs (``SectionInput``): ``models`` with columns ``trial_id``, ``model_id``, ``mode``,
``model``, ``dataset``, ``label_noise``, ``seed``, ``sparsity``, ``weights``, ``model_epoch``,
``train_loss``, ``test_acc``; the ``el2n`` table (``trial_id``, ``model_id``, ``index``, ``score``,
``noisy``, ``loss``) for the subgroup and noisy/original analyses.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional

import pandas as pd
from matplotlib.figure import Figure

from analysis.figures import png_bytes
from analysis.section import SectionInput, SectionOutput
from analysis.tables import to_csv_text, to_markdown

EL2N_GROUPS = 20
RUN = ["benchmark", "label_noise", "seed"]


def match_rule(differences: pd.Series) -> str:
    """"differ" when |mean| ≥ std (ddof = 1) of the per-seed differences, else "match";
    "n/a" with fewer than two seeds (Jin et al. 2022, Section 2)."""
    values = differences.dropna().astype(float)
    if len(values) < 2:
        return "n/a"
    mean, std = float(values.mean()), float(values.std(ddof=1))
    if abs(mean) >= std and mean != 0:
        return "lower" if mean < 0 else "higher"
    return "match"


def _prepare(models: pd.DataFrame) -> pd.DataFrame:
    frame = models.copy()
    frame["benchmark"] = frame["model"].astype(str) + "/" + frame["dataset"].astype(str)
    if "label_noise" not in frame.columns:
        frame["label_noise"] = 0.0
    frame["test_error"] = 1.0 - frame["test_acc"].astype(float)
    frame["remaining"] = 1.0 - frame["sparsity"].astype(float)
    frame["level"] = frame["model_id"].astype(str).str.extract(r"level_(\d+)", expand=False).astype(float)
    return frame


def optimal_sparsity(imp: pd.DataFrame) -> pd.DataFrame:
    """Per IMP run (benchmark, label noise, seed): the dense error, the optimal level (its
    sparsity and error) and the sparsest level still better than dense."""
    rows = []
    for key, run in imp.sort_values("level").groupby(RUN, sort=True):
        dense = run[run["level"] == 0]
        if dense.empty:
            continue
        dense_error = float(dense["test_error"].iloc[0])
        best = run.loc[run["test_error"].idxmin()]
        better = run[(run["level"] > 0) & (run["test_error"] < dense_error)]
        highest = better.loc[better["sparsity"].idxmax()] if len(better) else None
        rows.append({
            **dict(zip(RUN, key)), "trial": run["trial_id"].iloc[0], "dense_error": dense_error,
            "optimal_level": int(best["level"]), "optimal_sparsity": float(best["sparsity"]),
            "optimal_error": float(best["test_error"]),
            "highest_better_level": int(highest["level"]) if highest is not None else None,
            "highest_better_sparsity": float(highest["sparsity"]) if highest is not None else math.nan,
        })
    return pd.DataFrame(rows)


def optimal_summary(optimal: pd.DataFrame) -> pd.DataFrame:
    """Per benchmark and noise level: means over seeds and the match rule on optimal − dense."""
    rows = []
    for (benchmark, noise), group in optimal.groupby(["benchmark", "label_noise"], sort=True):
        rows.append({
            "benchmark": benchmark, "label_noise": noise, "seeds": len(group),
            "dense_error": group["dense_error"].mean(), "optimal_error": group["optimal_error"].mean(),
            "optimal_sparsity": group["optimal_sparsity"].mean(),
            "highest_better_sparsity": group["highest_better_sparsity"].mean(),
            "optimal_vs_dense": match_rule(group["optimal_error"] - group["dense_error"]),
        })
    return pd.DataFrame(rows)


def el2n_subgroup_differences(el2n: pd.DataFrame, optimal: pd.DataFrame, groups: int = EL2N_GROUPS) -> pd.DataFrame:
    """Per run and sparsity of interest ("optimal", "highest_better"): per EL2N group g
    (0 = lowest scores), mean loss of the sparse model minus mean loss of the dense model."""
    rows = []
    for run in optimal.itertuples():
        trial = el2n[el2n["trial_id"] == run.trial]
        dense = trial[trial["model_id"] == "level_00"].sort_values("index")
        if dense.empty:
            continue
        rank = dense["score"].rank(method="first").to_numpy() - 1
        group_of = dict(zip(dense["index"], (rank * groups // len(dense)).astype(int)))
        for which, level in (("optimal", run.optimal_level), ("highest_better", run.highest_better_level)):
            if level is None or (isinstance(level, float) and math.isnan(level)):
                continue
            sparse = trial[trial["model_id"] == f"level_{int(level):02d}"].sort_values("index")
            if sparse.empty:
                continue
            difference = sparse.set_index("index")["loss"] - dense.set_index("index")["loss"]
            by_group = difference.groupby(difference.index.map(group_of)).mean()
            for group, value in by_group.items():
                rows.append({"benchmark": run.benchmark, "label_noise": run.label_noise, "seed": run.seed,
                             "sparsity_of_interest": which, "group": int(group), "loss_difference": float(value)})
    return pd.DataFrame(rows)


def noisy_original_losses(el2n: pd.DataFrame, imp: pd.DataFrame) -> pd.DataFrame:
    """Per IMP model: mean training loss on original and on noisy examples (Figure 4)."""
    if el2n.empty:
        return pd.DataFrame()
    losses = el2n.groupby(["trial_id", "model_id", "noisy"])["loss"].mean().unstack("noisy")
    losses = losses.rename(columns={False: "loss_original", True: "loss_noisy"}).reset_index()
    return imp[["trial_id", "model_id", *RUN, "remaining"]].merge(losses, on=["trial_id", "model_id"], how="inner")


def _percent_axis(axis) -> None:
    """A log x axis of % weights remaining, dense (100%) on the left, plain-number ticks."""
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    axis.set_xscale("log")
    axis.invert_xaxis()
    axis.xaxis.set_major_formatter(ScalarFormatter())
    axis.xaxis.set_minor_formatter(NullFormatter())
    axis.set_xlabel("% weights remaining")


def _curve_axes(figure: Figure, benchmarks: List[str]):
    return [figure.add_subplot(1, len(benchmarks), i + 1) for i in range(len(benchmarks))]


def _benchmark_panels(frame: pd.DataFrame, noise_levels=None):
    """One panel per benchmark of ``frame``: (figure, colour per noise level, [(axis, rows,
    benchmark)])."""
    benchmarks = sorted(frame["benchmark"].unique())
    figure = Figure(figsize=(4.4 * len(benchmarks), 3.4))
    colours = _colours(frame["label_noise"].unique() if noise_levels is None else noise_levels)
    panels = [(axis, frame[frame["benchmark"] == benchmark], benchmark)
              for axis, benchmark in zip(_curve_axes(figure, benchmarks), benchmarks)]
    return figure, colours, panels


def _finish(axis, ylabel: str, title: str, legend_size: int = 6) -> None:
    axis.set_ylabel(ylabel)
    axis.set_title(title, fontsize=9)
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=legend_size)


def _colours(levels) -> Dict[float, tuple]:
    from matplotlib import cm

    ordered = sorted(levels)
    return {level: cm.viridis(i / max(len(ordered) - 1, 1)) for i, level in enumerate(ordered)}


def error_figure(imp: pd.DataFrame, optimal: pd.DataFrame) -> Figure:
    """Figure 3: test error against % weights remaining per noise level (mean over seeds),
    the dense error dashed, the optimal sparsity starred."""
    figure, colours, panels = _benchmark_panels(imp)
    for axis, part, benchmark in panels:
        for noise, group in part.groupby("label_noise", sort=True):
            curve = group.groupby("level").agg(remaining=("remaining", "mean"), error=("test_error", "mean"))
            axis.plot(100 * curve["remaining"], curve["error"], marker="o", markersize=3, color=colours[noise],
                      label=f"noise {noise:g}")
            axis.axhline(float(curve["error"].iloc[0]), color=colours[noise], linestyle="--", linewidth=0.8)
            best = curve["error"].idxmin()
            axis.plot(100 * curve.loc[best, "remaining"], curve.loc[best, "error"], marker="*", markersize=12,
                      color=colours[noise])
        _percent_axis(axis)
        _finish(axis, "test error", benchmark, legend_size=7)
    figure.tight_layout()
    return figure


def loss_figure(losses: pd.DataFrame) -> Figure:
    """Figure 4: training loss on original (dashed) and noisy (solid) examples against %
    weights remaining, per noise level (mean over seeds)."""
    figure, colours, panels = _benchmark_panels(losses)
    for axis, part, benchmark in panels:
        for noise, group in part.groupby("label_noise", sort=True):
            curve = group.groupby("model_id").mean(numeric_only=True).sort_values("remaining", ascending=False)
            axis.plot(100 * curve["remaining"], curve["loss_original"], linestyle="--", color=colours[noise],
                      label=f"noise {noise:g}, original")
            if "loss_noisy" in curve.columns and curve["loss_noisy"].notna().any():
                axis.plot(100 * curve["remaining"], curve["loss_noisy"], linestyle="-", color=colours[noise],
                          label=f"noise {noise:g}, noisy")
        _percent_axis(axis)
        _finish(axis, "training loss", benchmark)
    figure.tight_layout()
    return figure


def subgroup_figure(differences: pd.DataFrame) -> Figure:
    """Figures 2 and 5: sparse − dense training loss per EL2N group, per noise level, at the
    optimal sparsity (left) and the highest sparsity better than dense (right)."""
    kinds = [k for k in ("optimal", "highest_better") if k in set(differences["sparsity_of_interest"])]
    figure = Figure(figsize=(4.4 * len(kinds), 3.4))
    colours = _colours(differences["label_noise"].unique())
    for index, kind in enumerate(kinds):
        axis = figure.add_subplot(1, len(kinds), index + 1)
        part = differences[differences["sparsity_of_interest"] == kind]
        for (benchmark, noise), group in part.groupby(["benchmark", "label_noise"], sort=True):
            mean = group.groupby("group")["loss_difference"].mean()
            axis.plot(mean.index, mean.to_numpy(), marker="o", markersize=3, color=colours[noise],
                      label=f"{benchmark}, noise {noise:g}")
        axis.axhline(0.0, color="black", linewidth=0.6)
        axis.set_xlabel(f"EL2N percentile group (of {EL2N_GROUPS}, low to high)")
        _finish(axis, "sparse − dense training loss",
                "optimal sparsity" if kind == "optimal" else "highest sparsity better than dense")
    figure.tight_layout()
    return figure


def control_figure(imp: pd.DataFrame, control: pd.DataFrame, x: str, xlabel: str, title: str) -> Figure:
    """Figures 6 and 7: test error of IMP's levels (squares) and of a control (circles:
    extended dense training by epochs, or width down-scaling by weights remaining)."""
    figure, colours, panels = _benchmark_panels(imp, pd.concat([imp["label_noise"], control["label_noise"]]).unique())
    for axis, _, benchmark in panels:
        for frame, marker, label in ((imp, "s", "IMP"), (control, "o", "control")):
            part = frame[frame["benchmark"] == benchmark]
            for noise, group in part.groupby("label_noise", sort=True):
                curve = group.groupby(x)["test_error"].mean().sort_index()
                axis.plot(100 * curve.index if x == "remaining" else curve.index, curve.to_numpy(), marker=marker,
                          markersize=4, color=colours[noise], label=f"{label}, noise {noise:g}",
                          linestyle="-" if label == "IMP" else ":")
        if x == "remaining":
            _percent_axis(axis)
        else:
            axis.set_xlabel(xlabel)
        _finish(axis, "test error", f"{benchmark}: {title}")
    figure.tight_layout()
    return figure


def _extended_comparison(imp: pd.DataFrame, extended: pd.DataFrame) -> pd.DataFrame:
    """Per benchmark, noise and level: mean test errors and the match rule on IMP − extended."""
    joined = imp.merge(extended, on=[*RUN, "level"], suffixes=("_imp", "_dense"))
    rows = []
    for (benchmark, noise, level), group in joined.groupby(["benchmark", "label_noise", "level"], sort=True):
        rows.append({"benchmark": benchmark, "label_noise": noise, "level": int(level),
                     "epochs": int(group["model_epoch_imp"].iloc[0]),
                     "imp_error": group["test_error_imp"].mean(), "extended_dense_error": group["test_error_dense"].mean(),
                     "imp_vs_extended_dense": match_rule(group["test_error_imp"] - group["test_error_dense"])})
    return pd.DataFrame(rows)


def _width_series(standard: pd.DataFrame) -> Optional[pd.DataFrame]:
    if "width" not in standard.columns or standard["width"].nunique() < 2:
        return None
    frame = standard.copy()
    largest = frame.groupby(RUN)["weights"].transform("max").astype(float)
    frame["remaining"] = frame["weights"].astype(float) / largest
    return frame


def imp_section(data: SectionInput) -> SectionOutput:
    """The report section of an IMP zoo (see the module docstring)."""
    models = _prepare(data.models)
    lines = ["## Iterative magnitude pruning (Jin et al. 2022)", ""]
    files: Dict[str, bytes] = {}
    notes: List[str] = []
    imp = models[models["mode"] == "imp"]
    if imp.empty:
        return SectionOutput(markdown=lines + ["- no `imp` trial in this zoo"], notes=["imp section: no imp trial"])
    optimal = optimal_sparsity(imp)
    summary = optimal_summary(optimal)
    files["imp_optimal.csv"] = to_csv_text(optimal).encode()
    files["imp_summary.csv"] = to_csv_text(summary).encode()
    files["figures/imp_test_error.png"] = png_bytes(error_figure(imp, optimal))
    lines += [
        "Optimal sparsity: the level with the lowest **test** error of each run (the paper uses a validation "
        "set; this zoo has none, so the choice is optimistic). Match rule: results differ when the mean "
        "per-seed difference is at least one standard deviation from zero ('lower'/'higher'), else 'match'.",
        "", to_markdown(summary), "",
        "- [per-run optimal sparsities](imp_optimal.csv), [summary](imp_summary.csv)",
        "", "![test error against weights remaining](figures/imp_test_error.png)", "",
    ]
    el2n = data.tables.get("el2n", pd.DataFrame())
    if not el2n.empty and {"trial_id", "model_id", "loss", "score", "noisy"} <= set(el2n.columns):
        losses = noisy_original_losses(el2n, imp)
        if not losses.empty:
            files["figures/imp_train_loss.png"] = png_bytes(loss_figure(losses))
            lines += ["![training loss on original and noisy examples](figures/imp_train_loss.png)", ""]
        differences = el2n_subgroup_differences(el2n, optimal)
        if not differences.empty:
            mean = (differences.groupby(["benchmark", "label_noise", "sparsity_of_interest", "group"])
                    ["loss_difference"].mean().reset_index())
            files["imp_el2n_groups.csv"] = to_csv_text(mean).encode()
            files["figures/imp_el2n_groups.png"] = png_bytes(subgroup_figure(differences))
            lines += [f"EL2N subgroups: the training set split into {EL2N_GROUPS} equal groups by EL2N rank; "
                      "per group the sparse model's mean training loss minus the dense model's "
                      "([numbers](imp_el2n_groups.csv)).", "",
                      "![EL2N subgroup loss differences](figures/imp_el2n_groups.png)", ""]
    else:
        notes.append("imp section: no el2n table with per-example losses; measure the el2n family for the "
                     "subgroup and noisy/original analyses")
    extended = models[models["mode"] == "extended_dense"]
    if not extended.empty:
        comparison = _extended_comparison(imp, extended)
        files["imp_vs_extended_dense.csv"] = to_csv_text(comparison).encode()
        files["figures/imp_vs_extended_dense.png"] = png_bytes(control_figure(
            imp, extended, "model_epoch", "training epochs", "IMP vs extended dense training"))
        lines += ["### Extended dense training (Section 5.1)", "", to_markdown(comparison), "",
                  "![IMP against extended dense training](figures/imp_vs_extended_dense.png)", ""]
    widths = _width_series(models[models["mode"] == "standard"])
    if widths is not None:
        files["figures/imp_vs_width.png"] = png_bytes(control_figure(
            imp, widths, "remaining", "% weights remaining", "IMP vs width down-scaling"))
        table = widths.groupby(["benchmark", "label_noise", "width"]).agg(
            remaining=("remaining", "mean"), test_error=("test_error", "mean")).reset_index()
        files["imp_width_scaling.csv"] = to_csv_text(table).encode()
        lines += ["### Width down-scaling (Section 5.2)", "", to_markdown(table), "",
                  "![IMP against width down-scaling](figures/imp_vs_width.png)", ""]
    return SectionOutput(markdown=lines, files=files, notes=notes)

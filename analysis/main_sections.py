"""The main sections of every report: Tables 1–3 and the figures (registered in
:mod:`analysis.sections`). Each is ``fn(SectionInput) -> SectionOutput`` on the analysed zoo
(``section.zoo``) and the options; the tables hand their frame to the sections after them
(``frames``), the figures section draws from Table 1 and 2."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from analysis.data import model_labels
from analysis.errors import AnalysisError
from analysis.figures import (
    EPOCH_COLUMNS,
    double_descent_figure,
    el2n_figure,
    el2n_loss_column,
    el2n_summaries,
    figure_files,
    hessian_spectrum_figure,
    learning_curve_sample,
    learning_curves_figure,
    overview_figure,
    pruning_curves_figure,
    scatter_figure,
    slug,
)
from analysis.kendall import kendall_tau, kendall_tau_se
from analysis.section import SectionInput, SectionOutput
from analysis.tables import table1, table2, table3, to_csv_text, to_markdown

WIDTH = "width"
# A width axis with at least this many values is a width sweep (gets the double-descent plot).
MIN_SWEEP_WIDTHS = 3


def _table_files(name: str, table: pd.DataFrame, title: str, caption: str) -> Dict[str, bytes]:
    return {f"{name}.csv": to_csv_text(table).encode(),
            f"{name}.md": f"# {title}\n\n{caption}{to_markdown(table)}".encode()}


def table1_section(section: SectionInput) -> SectionOutput:
    """Table 1 (first paper): per measure, Kendall's τ with the target, adjusted R²,
    cross-validated R², conditional mutual information, bootstrap intervals (:func:`analysis.tables.table1`)."""
    zoo = section.zoo
    t1 = table1(zoo.measures, zoo.target_series, zoo.models, zoo.axes, extra_targets=dict(zoo.extra_targets),
                joint_fits=dict(zoo.joint_fits))
    title = (f"Table 1: Kendall's τ, adjusted R², cross-validated R² and conditional mutual information with the "
             f"{section.target}")
    caption = ("`kendall_tau_se` is the paper's s_τ, the standard error of τ under the null hypothesis of no "
               "association (the same for every measure); `*_ci_low`/`*_ci_high` are 95% bootstrap intervals over "
               "models (scipy.stats.bootstrap, percentile, seeded).\n\n")
    return SectionOutput(markdown=["", "### Table 1", "", to_markdown(t1)], files=_table_files("table1", t1, title, caption),
                         frames={"table1": t1})


def table2_section(section: SectionInput) -> SectionOutput:
    """Table 2 (first paper): τ along each hyperparameter axis (ψ_i), overall τ and granulated ψ
    (:func:`analysis.tables.table2`); linked from the report."""
    zoo = section.zoo
    t2 = table2(zoo.measures, zoo.target_series, zoo.models, zoo.axes, zoo.hold_fixed)
    title = f"Table 2: Kendall's τ along each hyperparameter axis (ψ_i), overall τ and granulated ψ, target {section.target}"
    caption = "`psi_ci_low`/`psi_ci_high`: 95% bootstrap interval of ψ over models.\n\n"
    return SectionOutput(markdown=[], files=_table_files("table2", t2, title, caption), frames={"table2": t2})


def table3_section(section: SectionInput) -> SectionOutput:
    """Table 3 (first paper): conditional mutual information between the anchor measure and each
    other measure (:func:`analysis.tables.table3`); linked from the report."""
    zoo, anchor = section.zoo, section.options.anchor
    t3 = table3(zoo.measures, zoo.models, zoo.axes, anchor=anchor)
    notes = [f"{anchor} was not measured: Table 3 is empty"] if anchor not in zoo.measures.columns else []
    title = f"Table 3: conditional mutual information between {anchor} and each other measure"
    return SectionOutput(markdown=[], files=_table_files("table3", t3, title, ""), notes=notes, frames={"table3": t3})


def is_width_sweep(models: pd.DataFrame, axes: Sequence[str]) -> bool:
    """``width`` is a numeric grid axis with at least :data:`MIN_SWEEP_WIDTHS` values."""
    return (
        WIDTH in axes
        and pd.api.types.is_numeric_dtype(models[WIDTH])
        and models[WIDTH].nunique() >= MIN_SWEEP_WIDTHS
    )


def colour_axis(models: pd.DataFrame, target: pd.Series, axes: Sequence[str]) -> Optional[str]:
    """The grid axis that orders the target best: the numeric axis with the largest |Kendall τ|
    between its value and the target (ties: the first in ``axes``); the first axis when none is
    numeric; None without axes."""
    best, best_tau = None, -1.0
    for axis in axes:
        column = models[axis]
        if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
            values = column.astype(float).to_numpy()
            if np.all(np.isfinite(values)):
                tau = abs(kendall_tau(values, target.reindex(models.index).to_numpy(dtype=float)))
                if tau > best_tau:
                    best, best_tau = axis, tau
    if best is None and axes:
        best = axes[0]
    return best


def _models_part(table: pd.DataFrame, models: pd.DataFrame) -> pd.DataFrame:
    """The rows of a per-model long table that belong to the analysed models (all rows of a
    table without ``trial_id``)."""
    return table[model_labels(table).isin(models.index)] if "trial_id" in table.columns else table


def figures_section(section: SectionInput) -> SectionOutput:
    """Every figure, each as PNG and SVG (the overview first, a scatter plot per Table 1
    measure, then those the zoo's tables allow), and the report's ``## Figures`` block."""
    zoo, target = section.zoo, section.target
    models, table_measures, target_series, axes = zoo.models, zoo.measures, zoo.target_series, zoo.axes
    t1, t2 = section.results["table1"], section.results.get("table2")
    colour_by = section.options.colour_by
    colour = colour_by if colour_by is not None else colour_axis(models, target_series, axes)
    if colour is not None and colour not in models.columns:
        raise AnalysisError(f"colour_by: {colour!r} is not a column of trials")
    files: Dict[str, bytes] = {}
    notes: List[str] = []
    figures: List[Tuple[str, str]] = []

    def save(figure, stem: str) -> str:
        files.update(figure_files(figure, f"figures/{stem}"))
        return f"figures/{stem}.png"

    if len(t1):
        relative = save(overview_figure(t1, t2 if t2 is not None else pd.DataFrame(), kendall_tau_se(len(models))),
                        "overview")
        figures.append(("overview: τ and ψ of every measure with 95% bootstrap intervals", relative))
    taus = dict(zip(t1["measure"], t1["kendall_tau"]))
    colours = models[colour] if colour is not None else None
    used_names: Dict[str, int] = {}
    for name in t1["measure"]:
        base = f"scatter_{slug(name)}"
        used_names[base] = used_names.get(base, 0) + 1
        file_name = base if used_names[base] == 1 else f"{base}_{used_names[base]}"
        figure = scatter_figure(table_measures[name], target_series, name, target, float(taus[name]), colour=colours)
        figures.append((f"{name} against {target}", save(figure, file_name)))

    if is_width_sweep(models, axes):
        curves: Dict[str, pd.Series] = {}
        if "test_loss" in models.columns:
            curves["test loss"] = models["test_loss"].astype(float)
        for name in t1["measure"]:
            curves[name] = table_measures[name]
        relative = save(double_descent_figure(models, curves, axes, WIDTH), "double_descent")
        figures.append(("test loss and every measure against width (double descent)", relative))

    tables = dict(section.tables)
    curves_table = tables.get("pruning_curves")
    if curves_table is not None:
        part = _models_part(curves_table, models)
        if len(part):
            relative = save(pruning_curves_figure(part), "pruning_vs_perturbation")
            figures.append(("loss after pruning versus a random perturbation of the same weights", relative))
        else:
            notes.append("tables['pruning_curves'] has no rows for the completed trials: no pruning figure")
    spectra = tables.get("hessian_eigenvalues")
    if spectra is not None:
        part = _models_part(spectra, models)
        if len(part):
            relative = save(hessian_spectrum_figure(part, target_series, target), "hessian_spectrum")
            figures.append(("top Hessian eigenvalues of every model by rank, coloured by the target", relative))
        else:
            notes.append("tables['hessian_eigenvalues'] has no rows for the completed trials: no spectrum figure")
    el2n = tables.get("el2n")
    if el2n is not None:
        part = _models_part(el2n, models)
        if len(part):
            noise = models["label_noise"] if "label_noise" in models.columns else None
            by_group, by_noisy = el2n_summaries(part, noise)
            has_loss = el2n_loss_column(part) is not None
            if not has_loss:
                notes.append("tables['el2n'] has no per-example loss column (loss or train_loss): the EL2N figure shows scores")
            files["el2n_groups.csv"] = to_csv_text(by_group).encode()
            files["el2n_noisy.csv"] = to_csv_text(by_noisy).encode()
            relative = save(el2n_figure(by_group, by_noisy, has_loss), "el2n")
            any_noisy = bool(by_noisy["noisy"].astype(bool).any())
            figures.append(("train loss by EL2N percentile group (20 groups)" + (", noisy versus clean" if any_noisy
                            else "; no label noise, so no noisy-versus-clean panels"), relative))
        else:
            notes.append("tables['el2n'] has no rows for the completed trials: no EL2N figure")
    epochs = tables.get("epochs")
    missing = [c for c in EPOCH_COLUMNS if epochs is not None and c not in epochs.columns]
    if missing:
        notes.append(f"tables['epochs'] lacks column(s) {', '.join(missing)}: no learning curves")
    elif epochs is not None and len(epochs):
        sample = learning_curve_sample(target_series)
        # The epochs table is per trial: a trial's curves stand for each of its models.
        rows = []
        for key in sample:
            part = epochs[epochs["trial_id"] == models.at[key, "trial_id"]]
            if len(part):
                rows.append(part.assign(model_id=models.at[key, "model_id"]) if "model_id" in models.columns else part)
        if rows:
            relative = save(learning_curves_figure(pd.concat(rows, ignore_index=True), target_series, target),
                            "learning_curves")
            figures.append((f"learning curves (train and test loss and accuracy per epoch) of {len(rows)} models "
                            f"spanning the {target}", relative))
        else:
            notes.append("tables['epochs'] has no rows for the sampled models: no learning curves")

    markdown = ["## Figures", "", "Every figure is also written as SVG next to its PNG."
                + (f" Scatter points are coloured by `{colour}`." if colour else ""), ""]
    markdown += [f"- [{title}]({path})" for title, path in figures]
    for title, path in figures:
        if not path.rsplit("/", 1)[-1].startswith("scatter_"):
            markdown += ["", f"![{title}]({path})"]
    return SectionOutput(markdown=markdown, files=files, notes=notes, figures=figures)

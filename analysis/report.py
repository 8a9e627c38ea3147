"""``analyze``: the whole analysis of one experiment, from the store's DataFrames to the
tables, figures and ``report.md`` in one folder. The ``genzoo analyze`` command reads the
store and calls :func:`analyze`; everything here is pure pandas/numpy/scipy/matplotlib.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from analysis.data import (
    MIN_MODELS,
    TARGETS,
    check_target,
    completed_trials,
    grid_axes,
    measures_wide,
    target_values,
)
from analysis import against_paper
from analysis.checks import (
    bound_warnings,
    convergence_confounds,
    convergence_warnings,
    coverage_warnings,
    degenerate_warnings,
    fit_warnings,
    noise_warnings,
    off_target_warnings,
    partial_measures,
    target_noise_warnings,
    target_spread_and_noise,
    too_small_warnings,
)
from analysis.data import measure_settings
from analysis.errors import AnalysisError
from analysis.kendall import kendall_tau, kendall_tau_se
from analysis.paper_claims import PaperComparison
from analysis.report_text import report_text
from analysis.sections import SECTIONS, SectionInput
from analysis.sections import names as section_names
from analysis.figures import (
    EPOCH_COLUMNS,
    double_descent_figure,
    hessian_spectrum_figure,
    el2n_figure,
    el2n_loss_column,
    el2n_summaries,
    figure_files,
    learning_curve_sample,
    learning_curves_figure,
    overview_figure,
    pruning_curves_figure,
    scatter_figure,
    slug,
)
from analysis.regression import fit_feature_group
from analysis.tables import ANCHOR_MEASURE, table1, table2, table3, to_csv_text, to_markdown, to_text

__all__ = ["AnalysisError", "AnalysisResult", "analyze", "FEATURE_GROUPS"]

# (feature prefix, derived measure, derived best-single-variable measure or None):
# the per-layer margin signature of Jiang et al. 2019 gives the first paper's "Normalized
# Margins" and "Best Margin Variable"; the logit-margin statistics give the double-descent
# "Margins" baseline (first paper, Appendix A.4).
FEATURE_GROUPS: Tuple[Tuple[str, str, Optional[str]], ...] = (
    ("margin/", "normalized_margins", "best_margin_variable"),
    ("output_margin/", "output_margins", None),
)
WIDTH = "width"
# The per-(family, settings) table of the measure rows, linked from the report.
SETTINGS_CSV = "measure_settings.csv"
# A width axis with at least this many values is a width sweep (gets the double-descent plot).
MIN_SWEEP_WIDTHS = 3


@dataclass(frozen=True)
class AnalysisResult:
    """What :func:`analyze` computed and wrote.

    ``paths``: every file written, in order; ``table1_text``: Table 1 for the terminal;
    ``notes``: what was left out or could not be computed, one line each (also in the report);
    ``against_paper``: one row per claim of the paper compared with (None without a paper).
    """

    table1: pd.DataFrame
    table2: pd.DataFrame
    table3: pd.DataFrame
    paths: List[Path]
    table1_text: str
    report_path: Path
    target: str
    axes: Tuple[str, ...]
    n_models: int
    notes: Tuple[str, ...] = field(default=())
    warnings: Tuple[str, ...] = field(default=())
    against_paper: Optional[pd.DataFrame] = None


def _write(path: Path, data: bytes, written: List[Path]) -> None:
    """Write one output file. Plain writes: ``genzoo analyze`` writes into a scratch folder
    and the store copies each file in atomically (``sweep.store.Store.write_bytes``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    written.append(path)


def is_width_sweep(models: pd.DataFrame, axes: Sequence[str]) -> bool:
    """``width`` is a numeric grid axis with at least :data:`MIN_SWEEP_WIDTHS` values."""
    return (
        WIDTH in axes
        and pd.api.types.is_numeric_dtype(models[WIDTH])
        and models[WIDTH].nunique() >= MIN_SWEEP_WIDTHS
    )


def analyze(
    trials: pd.DataFrame,
    measures: pd.DataFrame,
    out_dir: str | os.PathLike,
    *,
    target: str = "gap",
    tables: Optional[Mapping[str, pd.DataFrame]] = None,
    experiment: str = "",
    settings: Optional[Mapping[str, object]] = None,
    hparams: Sequence[str],
    double_descent: bool = False,
    anchor: str = ANCHOR_MEASURE,
    feature_groups: Sequence[Tuple[str, str, Optional[str]]] = FEATURE_GROUPS,
    sections: Sequence[str] = (),
    test_examples: Optional[int] = None,
    colour_by: Optional[str] = None,
    paper: Optional[PaperComparison] = None,
    include_partial: bool = False,
) -> AnalysisResult:
    """Compute and write the analysis of one experiment into ``out_dir``.

    Inputs are the store's ``trials`` and ``measures`` DataFrames (schemas in
    :mod:`analysis.data`), optional per-example/per-fraction ``tables`` (``"pruning_curves"``,
    ``"el2n"``), the experiment's name, the ``settings`` the run used (stated in the report,
    nested dicts flattened to dotted keys) and the names of the hyperparameter columns
    ``hparams`` (the sweep's grid axes; ``seed`` is never an axis, see
    :func:`analysis.data.grid_axes`).

    Choices of the paper being reproduced, given by the caller (a preset's ``analysis:``
    block): ``double_descent`` (also implied by ``target="test_loss"``) adds Table 1's
    τ with the test loss and test error and the double-descent discussion; ``anchor`` is the
    measure Table 3 conditions on (the first paper's prunability); ``feature_groups`` are the
    (feature prefix, derived measure, best-single-variable measure or None) regressions of
    :data:`FEATURE_GROUPS`; ``sections`` names the paper-specific sections to add
    (:mod:`analysis.sections`), each given every model of ``trials`` and the ``tables``.

    ``test_examples`` (the size of the test set) lets the report warn when the target's spread
    is below one model's test-set noise (:mod:`analysis.checks`); ``colour_by`` names the
    hyperparameter that colours the scatter plots (default :func:`colour_axis`). With
    ``tables["epochs"]`` (the store's per-epoch records) the report draws learning curves.
    ``paper`` (a preset's ``analysis.paper``) adds the section "Against the paper" and
    ``against_paper.csv`` (:mod:`analysis.against_paper`).

    A measure with a value for fewer than all the models of the tables is left out of Tables
    1–3 (and of the comparison with the paper) and listed with its coverage, unless
    ``include_partial``.

    Only completed trials with a finite target and measure rows with status "ok" and a finite
    value enter the statistics. Writes ``table1|2|3.md/.csv``, ``figures/*.png`` and ``*.svg``,
    ``measure_settings.csv``, the EL2N summaries when given, and ``report.md``. Same inputs give
    byte-identical files: rows are sorted by trial_id, measures by name, and every random choice
    (CV folds, bootstrap resamples) has a fixed seed.

    Raises :class:`AnalysisError` (one line) for an unknown target, fewer than
    ``MIN_MODELS`` = 3 completed trials, a constant target, or no measure values.
    """
    check_target(target)
    out = Path(out_dir)
    notes: List[str] = []
    completed = completed_trials(trials)
    target_all = target_values(completed, target)
    finite_target = np.isfinite(target_all.to_numpy())
    if not finite_target.all():
        notes.append(f"{int((~finite_target).sum())} completed trial(s) have no finite {target} and are left out")
    models = completed[finite_target]
    if len(models) < MIN_MODELS:
        raise AnalysisError(
            f"trials: too small a zoo: {len(models)} completed trial(s) with a finite {target} "
            f"out of {len(trials)}, need at least {MIN_MODELS}"
        )
    target_series = target_all[finite_target]
    if np.all(target_series.to_numpy() == target_series.iloc[0]):
        raise AnalysisError(f"target: {target} is the same for all {len(models)} completed trials; nothing to rank")
    ids = list(models.index)

    if len(measures) == 0:
        raise AnalysisError("measures: no rows; run the measure stage first")
    wide = measures_wide(measures, ids)
    wide = wide.loc[:, wide.notna().any(axis=0)]
    if wide.shape[1] == 0:
        raise AnalysisError(
            f"measures: no measure has an 'ok' finite value for the {len(ids)} completed trials "
            f"(run the measure stage first)"
        )
    axes, hold_fixed, axis_notes = grid_axes(models, hparams)
    notes.extend(axis_notes)

    table_measures, joint_fits, fit_notes = _measures_for_tables(wide, target_series, feature_groups)
    notes.extend(fit_notes)
    partial = partial_measures(table_measures)
    if partial and not include_partial:
        if len(partial) == table_measures.shape[1]:
            raise AnalysisError(
                f"measures: every measure was computed on only part of the {len(ids)} completed trials (at most "
                f"{max(partial.values())}); finish `genzoo measure` or analyze with --include-partial")
        table_measures = table_measures.drop(columns=list(partial))
    extra_targets: Dict[str, pd.Series] = {}
    double_descent = double_descent or target == "test_loss"
    if double_descent:
        for name in ("test_loss", "test_error"):
            if all(c in models.columns for c in TARGETS[name][1]):
                extra_targets[name] = target_values(models, name)

    t1 = table1(table_measures, target_series, models, axes, extra_targets=extra_targets, joint_fits=joint_fits)
    t2 = table2(table_measures, target_series, models, axes, hold_fixed)
    t3 = table3(table_measures, models, axes, anchor=anchor)
    if anchor not in table_measures.columns:
        notes.append(f"{anchor} was not measured: Table 3 is empty")

    written: List[Path] = []
    titles = {
        "table1": f"Table 1: Kendall's τ, adjusted R², cross-validated R² and conditional mutual information with the {target}",
        "table2": f"Table 2: Kendall's τ along each hyperparameter axis (ψ_i), overall τ and granulated ψ, target {target}",
        "table3": f"Table 3: conditional mutual information between {anchor} and each other measure",
    }
    captions = {
        "table1": "`kendall_tau_se` is the paper's s_τ, the standard error of τ under the null hypothesis of no "
                  "association (the same for every measure); `*_ci_low`/`*_ci_high` are 95% bootstrap intervals over "
                  "models (scipy.stats.bootstrap, percentile, seeded).\n\n",
        "table2": "`psi_ci_low`/`psi_ci_high`: 95% bootstrap interval of ψ over models.\n\n",
        "table3": "",
    }
    for name, table in (("table1", t1), ("table2", t2), ("table3", t3)):
        _write(out / f"{name}.csv", to_csv_text(table).encode(), written)
        _write(out / f"{name}.md", f"# {titles[name]}\n\n{captions[name]}{to_markdown(table)}".encode(), written)

    confounds = convergence_confounds(models, table_measures, target_series)
    warnings = _warnings(models, table_measures, measures, target, target_series, test_examples,
                         coverage=coverage_warnings(partial, len(models), included=include_partial),
                         convergence=convergence_warnings(confounds, models, target) + off_target_warnings(models))
    against: List[str] = []
    results = None
    if paper is not None:
        zoo = against_paper.Zoo(
            models=models, measures=table_measures, target=target, target_series=target_series, axes=axes,
            hold_fixed=hold_fixed, t1=t1, t2=t2, t3=t3, tables=dict(tables or {}),
            partial={} if include_partial else partial, confounds=confounds)
        results = against_paper.compare(paper, zoo)
        _write(out / against_paper.CSV_NAME, against_paper.csv_text(results).encode(), written)
        against = against_paper.section(paper, zoo, results)
        warnings += too_small_warnings(results)
    _write(out / SETTINGS_CSV, to_csv_text(measure_settings(measures, ids)).encode(), written)
    colour = colour_by if colour_by is not None else colour_axis(models, target_series, axes)
    if colour is not None and colour not in models.columns:
        raise AnalysisError(f"colour_by: {colour!r} is not a column of trials")
    figures = _write_figures(out, models, table_measures, target_series, target, axes, t1, tables, written, notes,
                             t2=t2, colour=colour)
    extra: List[str] = []
    for name in sections:
        if name not in SECTIONS:
            raise AnalysisError(f"sections: unknown section {name!r}, allowed: {', '.join(section_names()) or 'none'}")
        every_model = trials.set_index("trial_id", drop=False).rename_axis(None)
        output = SECTIONS[name](SectionInput(
            models=every_model, measures=measures_wide(measures, list(every_model.index)),
            tables=dict(tables or {}), hparams=list(hparams), target=target,
        ))
        for relative, content in output.files.items():
            _write(out / relative, content, written)
        extra += ["", *output.markdown]
        notes.extend(output.notes)
    report_path = out / "report.md"
    report = report_text(
        experiment=experiment, trials=trials, models=models, target=target, target_series=target_series,
        axes=axes, hold_fixed=hold_fixed, t1=t1, t2=t2, t3=t3, figures=figures, settings=settings or {},
        measures=measures, notes=notes, double_descent=double_descent, anchor=anchor, sections=extra,
        warnings=warnings, colour=colour, settings_csv=SETTINGS_CSV, against=against,
        partial={} if include_partial else partial,
        spread_and_noise=target_spread_and_noise(target, target_series, models.get("test_acc"), test_examples),
        test_examples=test_examples,
    )
    _write(report_path, report.encode(), written)

    header = f"Table 1 — {experiment or 'experiment'}: target {target}, {len(models)} models\n"
    return AnalysisResult(
        table1=t1, table2=t2, table3=t3, paths=written, table1_text=header + to_text(t1),
        report_path=report_path, target=target, axes=tuple(axes), n_models=len(models), notes=tuple(notes),
        warnings=tuple(warnings), against_paper=results,
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


def _warnings(models: pd.DataFrame, table_measures: pd.DataFrame, measures: pd.DataFrame,
              target: str, target_series: pd.Series, test_examples: Optional[int], *,
              coverage: Sequence[str] = (), convergence: Sequence[str] = ()) -> List[str]:
    """Every check of :mod:`analysis.checks`, one line each: the target's spread against its
    test-set noise, the fit of the models, the ``coverage`` and ``convergence`` warnings
    computed by the caller, then per Table 1 measure (sorted by name) a degenerate value
    distribution, a value at a bound of its settings, a large stochastic error."""
    found = target_noise_warnings(target, target_series, models.get("test_acc"), test_examples)
    found += fit_warnings(models.get("train_acc"))
    found += list(coverage) + list(convergence)
    ids = list(models.index)
    per_measure = [degenerate_warnings(table_measures), bound_warnings(measures, ids), noise_warnings(measures, ids)]
    for name in sorted(set().union(*per_measure) & set(table_measures.columns)):
        found += [checks[name] for checks in per_measure if name in checks]
    return found


def _measures_for_tables(wide: pd.DataFrame, target: pd.Series, feature_groups: Sequence[Tuple[str, str, Optional[str]]]
                         ) -> Tuple[pd.DataFrame, Dict[str, Tuple[float, float]], List[str]]:
    """The measure columns of the tables: every stored measure except the regression features,
    plus the measures derived from each feature group (see :data:`FEATURE_GROUPS`)."""
    notes: List[str] = []
    joint_fits: Dict[str, Tuple[float, float]] = {}
    prefixes = tuple(prefix for prefix, _, _ in feature_groups)
    plain = wide[[c for c in wide.columns if not c.startswith(prefixes)]].copy()
    for prefix, derived, best_name in feature_groups:
        features = [c for c in wide.columns if c.startswith(prefix)]
        if not features:
            continue
        try:
            fit = fit_feature_group(wide[features], target)
        except AnalysisError as error:
            notes.append(f"{derived} not computed: {error}")
            continue
        if derived in plain.columns:
            notes.append(f"{derived}: the stored measure of that name is replaced by the analysis' regression")
        plain[derived] = fit.prediction.reindex(plain.index)
        joint_fits[derived] = (fit.adjusted_r2, fit.cv_r2)
        n, p = len(fit.prediction), len(fit.features)
        note = f"{derived}: joint least-squares fit of the target on {p} feature(s) {prefix}* over {n} models"
        if fit.dropped:
            note += f"; left out (not finite for every model, or constant): {', '.join(fit.dropped)}"
        if n <= p + 1:
            note += "; more features than models allow, so the fit is the minimum-norm solution and adjusted R² is undefined"
        notes.append(note)
        if best_name is not None:
            if best_name in plain.columns:
                notes.append(f"{best_name}: the stored measure of that name is replaced by the analysis' choice")
            plain[best_name] = fit.best_values.reindex(plain.index)
            notes.append(
                f"{best_name} = {fit.best_feature} (largest |standardized coefficient| "
                f"{abs(float(fit.standardized_coef[fit.best_feature])):.4f} in the joint fit), oriented by its sign"
            )
    return plain[sorted(plain.columns)], joint_fits, notes


def _write_figures(
    out: Path,
    models: pd.DataFrame,
    table_measures: pd.DataFrame,
    target_series: pd.Series,
    target: str,
    axes: Sequence[str],
    t1: pd.DataFrame,
    tables: Optional[Mapping[str, pd.DataFrame]],
    written: List[Path],
    notes: List[str],
    *,
    t2: Optional[pd.DataFrame] = None,
    colour: Optional[str] = None,
) -> List[Tuple[str, str]]:
    """Draw and write every figure, each as PNG and SVG; returns (title, path of the PNG
    relative to ``out``). The overview comes first."""
    figures: List[Tuple[str, str]] = []

    def save(figure, stem: str) -> str:
        for relative, content in figure_files(figure, f"figures/{stem}").items():
            _write(out / relative, content, written)
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

    tables = dict(tables or {})
    curves_table = tables.get("pruning_curves")
    if curves_table is not None:
        part = curves_table[curves_table["trial_id"].isin(models.index)] if "trial_id" in curves_table.columns else curves_table
        if len(part):
            relative = save(pruning_curves_figure(part), "pruning_vs_perturbation")
            figures.append(("loss after pruning versus a random perturbation of the same weights", relative))
        else:
            notes.append("tables['pruning_curves'] has no rows for the completed trials: no pruning figure")
    spectra = tables.get("hessian_eigenvalues")
    if spectra is not None:
        part = spectra[spectra["trial_id"].isin(models.index)] if "trial_id" in spectra.columns else spectra
        if len(part):
            relative = save(hessian_spectrum_figure(part, target_series, target), "hessian_spectrum")
            figures.append(("top Hessian eigenvalues of every model by rank, coloured by the target", relative))
        else:
            notes.append("tables['hessian_eigenvalues'] has no rows for the completed trials: no spectrum figure")
    el2n = tables.get("el2n")
    if el2n is not None:
        part = el2n[el2n["trial_id"].isin(models.index)] if "trial_id" in el2n.columns else el2n
        if len(part):
            noise = models["label_noise"] if "label_noise" in models.columns else None
            by_group, by_noisy = el2n_summaries(part, noise)
            has_loss = el2n_loss_column(part) is not None
            if not has_loss:
                notes.append("tables['el2n'] has no per-example loss column (loss or train_loss): the EL2N figure shows scores")
            _write(out / "el2n_groups.csv", to_csv_text(by_group).encode(), written)
            _write(out / "el2n_noisy.csv", to_csv_text(by_noisy).encode(), written)
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
        trial_of = models["trial"] if "trial" in models.columns else pd.Series(models.index, index=models.index)
        # The epochs table is per trial: a trial's curves stand for its models (keyed by model here).
        rows = []
        for key in sample:
            part = epochs[epochs["trial_id"] == trial_of[key]]
            if len(part):
                rows.append(part.assign(trial_id=key))
        if rows:
            relative = save(learning_curves_figure(pd.concat(rows, ignore_index=True), target_series, target),
                            "learning_curves")
            figures.append((f"learning curves (train and test loss and accuracy per epoch) of {len(rows)} models "
                            f"spanning the {target}", relative))
        else:
            notes.append("tables['epochs'] has no rows for the sampled models: no learning curves")
    return figures

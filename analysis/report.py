"""``analyze``: the whole analysis of one experiment, from the store's DataFrames to the
tables, figures and ``report.md`` in one folder. The ``genzoo analyze`` command reads the
store and calls :func:`analyze`; everything here is pure pandas/numpy/scipy/matplotlib.
"""

from __future__ import annotations

import dataclasses
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
    index_by_model,
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
from analysis.main_sections import MIN_SWEEP_WIDTHS, WIDTH, colour_axis, is_width_sweep  # noqa: F401 (re-exported)
from analysis.options import FEATURE_GROUPS, AnalysisOptions
from analysis.regression import fit_feature_group
from analysis.report_text import report_text
from analysis.section import SectionInput, SectionOutput, Zoo
from analysis import sections as section_registry
from analysis.tables import to_csv_text, to_text

__all__ = ["AnalysisError", "AnalysisOptions", "AnalysisResult", "analyze", "FEATURE_GROUPS"]

# The per-(family, settings) table of the measure rows, linked from the report.
SETTINGS_CSV = "measure_settings.csv"


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


def analyze(
    trials: pd.DataFrame,
    measures: pd.DataFrame,
    out_dir: str | os.PathLike,
    options: Optional[AnalysisOptions] = None,
    *,
    tables: Optional[Mapping[str, pd.DataFrame]] = None,
    **choices: object,
) -> AnalysisResult:
    """Compute and write the analysis of one experiment into ``out_dir``.

    Inputs are the store's ``trials`` (one row per model: ``trial_id``, ``model_id`` when the
    zoo has several models per trial, ``status``, the hyperparameters and final metrics) and
    ``measures`` DataFrames (schemas in :mod:`analysis.data`), optional long ``tables``
    (``"pruning_curves"``, ``"el2n"``, the per-epoch ``"epochs"``, a section's own) and the
    :class:`~analysis.options.AnalysisOptions` (``choices``: fields of the options given as
    keywords, replacing those of ``options``).

    The report is its sections (:mod:`analysis.sections`): Tables 1–3 and the figures, then the
    optional sections the options name, each given every model of ``trials`` and the ``tables``.
    A measure with a value for fewer than all the models of the tables is left out of Tables
    1–3 (and of the comparison with the paper) and listed with its coverage, unless
    ``include_partial``.

    Only completed trials with a finite target and measure rows with status "ok" and a finite
    value enter the statistics. Writes ``table1|2|3.md/.csv``, ``figures/*.png`` and ``*.svg``,
    ``measure_settings.csv``, the EL2N summaries when given, and ``report.md``. Same inputs give
    byte-identical files: rows are sorted by model, measures by name, and every random choice
    (CV folds, bootstrap resamples) has a fixed seed.

    Raises :class:`AnalysisError` (one line) for an unknown target, fewer than
    ``MIN_MODELS`` = 3 completed trials, a constant target, or no measure values.
    """
    options = dataclasses.replace(options or AnalysisOptions(), **choices)
    target = options.target
    check_target(target)
    unknown = [name for name in options.sections if name not in section_registry.names()]
    if unknown:
        # Checked before anything is written (the sweep file's sections are checked when it is read).
        section_registry.get(unknown[0])
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
    axes, hold_fixed, axis_notes = grid_axes(models, options.hparams)
    notes.extend(axis_notes)

    table_measures, joint_fits, fit_notes = _measures_for_tables(wide, target_series, options.feature_groups)
    notes.extend(fit_notes)
    partial = partial_measures(table_measures)
    include_partial = options.include_partial
    if partial and not include_partial:
        if len(partial) == table_measures.shape[1]:
            raise AnalysisError(
                f"measures: every measure was computed on only part of the {len(ids)} completed trials (at most "
                f"{max(partial.values())}); finish `genzoo measure` or analyze with --include-partial")
        table_measures = table_measures.drop(columns=list(partial))
    extra_targets: Dict[str, pd.Series] = {}
    double_descent = options.with_double_descent
    if double_descent:
        for name in ("test_loss", "test_error"):
            if all(c in models.columns for c in TARGETS[name][1]):
                extra_targets[name] = target_values(models, name)
    zoo = Zoo(models=models, measures=table_measures, target_series=target_series, axes=axes, hold_fixed=hold_fixed,
              joint_fits=joint_fits, extra_targets=extra_targets)

    written: List[Path] = []
    every_model = index_by_model(trials)
    every_measure = measures_wide(measures, list(every_model.index))
    results: Dict[str, pd.DataFrame] = {}
    figures: List[Tuple[str, str]] = []
    body: List[str] = []
    for spec in section_registry.main_sections():
        output = spec.run(SectionInput(
            models=every_model, measures=every_measure, tables=dict(tables or {}), hparams=list(options.hparams),
            target=target, zoo=zoo, options=options, results=dict(results)))
        _write_outputs(out, output, written)
        notes.extend(output.notes)
        results.update(output.frames)
        figures += output.figures
        body += output.markdown
    t1, t2, t3 = results["table1"], results["table2"], results["table3"]

    confounds = convergence_confounds(models, table_measures, target_series)
    warnings = _warnings(models, table_measures, measures, target, target_series, options.test_examples,
                         coverage=coverage_warnings(partial, len(models), included=include_partial),
                         convergence=convergence_warnings(confounds, models, target) + off_target_warnings(models))
    against: List[str] = []
    compared = None
    if options.paper is not None:
        paper_zoo = against_paper.Zoo(
            models=models, measures=table_measures, target=target, target_series=target_series, axes=axes,
            hold_fixed=hold_fixed, t1=t1, t2=t2, t3=t3, tables=dict(tables or {}),
            partial={} if include_partial else partial, confounds=confounds)
        compared = against_paper.compare(options.paper, paper_zoo)
        _write(out / against_paper.CSV_NAME, against_paper.csv_text(compared).encode(), written)
        against = against_paper.section(options.paper, paper_zoo, compared)
        warnings += too_small_warnings(compared)
    _write(out / SETTINGS_CSV, to_csv_text(measure_settings(measures, ids)).encode(), written)
    extra: List[str] = []
    for name in options.sections:
        output = section_registry.get(name).run(SectionInput(
            models=every_model, measures=every_measure, tables=dict(tables or {}), hparams=list(options.hparams),
            target=target, options=options,
        ))
        _write_outputs(out, output, written)
        extra += ["", *output.markdown]
        notes.extend(output.notes)
    report_path = out / "report.md"
    report = report_text(
        options=options, trials=trials, zoo=zoo,
        body=body, figures=figures, measures=measures, notes=notes, sections=extra, warnings=warnings,
        settings_csv=SETTINGS_CSV, against=against, partial={} if include_partial else partial,
        spread_and_noise=target_spread_and_noise(target, target_series, models.get("test_acc"),
                                                 options.test_examples),
        t1=t1, t2=t2,
    )
    _write(report_path, report.encode(), written)

    header = f"Table 1 — {options.experiment or 'experiment'}: target {target}, {len(models)} models\n"
    return AnalysisResult(
        table1=t1, table2=t2, table3=t3, paths=written, table1_text=header + to_text(t1),
        report_path=report_path, target=target, axes=tuple(axes), n_models=len(models), notes=tuple(notes),
        warnings=tuple(warnings), against_paper=compared,
    )


def _write_outputs(out: Path, output: SectionOutput, written: List[Path]) -> None:
    for relative, content in output.files.items():
        _write(out / relative, content, written)


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

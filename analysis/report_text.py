"""The text of ``report.md``: the summary paragraph, the tables, the figures, the settings
and the notes of one analysis, as Markdown."""

from __future__ import annotations

import json
import math
from typing import List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from analysis.bootstrap import CONFIDENCE, METHOD, N_RESAMPLES, SEED
from analysis.data import SEED_COLUMN, TARGETS, measure_coverage, measure_settings
from analysis.kendall import granulated_kendall, kendall_tau_se
from analysis.options import AnalysisOptions
from analysis.regression import CV_FOLDS, CV_SEED
from analysis.section import Zoo
from analysis.tables import to_markdown

# Axis values listed in the summary paragraph; more are shown as a range.
MAX_LISTED_VALUES = 8


def flatten_settings(settings: Mapping[str, object], prefix: str = "") -> List[Tuple[str, str]]:
    """Nested settings as sorted (dotted key, JSON value) pairs."""
    items: List[Tuple[str, str]] = []
    for key in sorted(settings, key=str):
        value = settings[key]
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            items.extend(flatten_settings(value, prefix=f"{name}."))
        else:
            items.append((name, value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)))
    return items


def _describe_values(column: pd.Series) -> str:
    values = list(pd.unique(column))
    try:
        values = sorted(values)
    except TypeError:
        values = sorted(values, key=str)
    if len(values) <= MAX_LISTED_VALUES:
        return ", ".join(str(v) for v in values)
    return f"{len(values)} values, {values[0]} … {values[-1]}"


def _best_row(table: pd.DataFrame, column: str) -> Optional[pd.Series]:
    if table.empty or column not in table.columns:
        return None
    magnitude = table[column].astype(float).abs()
    if not magnitude.notna().any():
        return None
    return table.loc[magnitude.idxmax()]


def _interval(row: pd.Series, column: str) -> str:
    low, high = row.get(f"{column}_ci_low"), row.get(f"{column}_ci_high")
    if low is None or high is None or not (math.isfinite(float(low)) and math.isfinite(float(high))):
        return ""
    return f" [{float(low):.4f}, {float(high):.4f}]"


def _resolved_settings(recorded: pd.DataFrame) -> pd.DataFrame:
    """The resolved settings per family (the ``settings`` part of the stored JSON, without the
    per-model ``info``) and the number of models that used them."""
    columns = ["family", "settings", "trials"]
    if recorded.empty:
        return pd.DataFrame(columns=columns)
    settings = []
    for text in recorded["settings"]:
        try:
            parsed = json.loads(text)
        except (json.JSONDecodeError, TypeError):
            parsed = text
        if isinstance(parsed, dict) and "settings" in parsed:
            parsed = parsed["settings"]
        settings.append(parsed if isinstance(parsed, str) else json.dumps(parsed, sort_keys=True, default=str))
    frame = pd.DataFrame({"family": recorded["family"].astype(str), "settings": settings,
                          "trials": recorded["trials"].astype(int)})
    return frame.groupby(["family", "settings"], sort=True)["trials"].sum().reset_index()[columns]


def _fmt(value: object) -> str:
    if isinstance(value, (float, np.floating)):
        return "–" if math.isnan(value) else f"{float(value):.4f}"
    return str(value)


def report_text(
    *,
    options: AnalysisOptions,
    trials: pd.DataFrame,
    zoo: Zoo,
    t1: pd.DataFrame,
    t2: pd.DataFrame,
    body: Sequence[str],
    figures: Sequence[Tuple[str, str]],
    measures: pd.DataFrame,
    notes: Sequence[str],
    sections: Sequence[str] = (),
    warnings: Sequence[str] = (),
    settings_csv: Optional[str] = None,
    spread_and_noise: Optional[Tuple[float, float]] = None,
    against: Sequence[str] = (),
    partial: Optional[Mapping[str, int]] = None,
) -> str:
    """``report.md``: the summary of the analysed ``zoo`` (its Table 1 ``t1`` and Table 2
    ``t2``), warnings, the comparison with the paper (``against``), links to the tables, the
    main sections' Markdown (``body``: Table 1 and the figures), the settings, the optional
    ``sections``, the measures' coverage and the ``notes``."""
    models, target, target_series = zoo.models, options.target, zoo.target_series
    axes, hold_fixed, experiment, anchor = zoo.axes, zoo.hold_fixed, options.experiment, options.anchor
    double_descent, test_examples = options.with_double_descent, options.test_examples
    ids = list(models.index)
    status_counts = trials["status"].astype(str).value_counts().sort_index()
    statuses = ", ".join(f"{count} {status}" for status, count in status_counts.items())
    axis_text = "; ".join(f"{a} ({_describe_values(models[a])})" for a in axes) or "none (no hyperparameter varies)"
    seed_text = ""
    if SEED_COLUMN in hold_fixed:
        seed_text = f" Seeds ({_describe_values(models[SEED_COLUMN])}) are replicates, not an axis."
    values = target_series.to_numpy()
    paragraph = (
        f"Experiment `{experiment or 'unnamed'}`: {len(trials)} trials ({statuses}); the {len(models)} completed "
        f"trials with a finite target enter the analysis. Grid axes: {axis_text}.{seed_text} "
        f"Target: {TARGETS[target][0]} (mean {values.mean():.4f}, range {values.min():.4f} to {values.max():.4f}). "
        f"{len(t1)} measures were analyzed."
    )
    if spread_and_noise is not None:
        spread, noise = spread_and_noise
        paragraph += (
            f" The target's standard deviation across models is {spread:.4f}, "
            f"{spread / noise:.1f} times one model's test-set standard error {noise:.4f} ({test_examples} test images)."
            if noise > 0 else ""
        )
    best = _best_row(t1, "kendall_tau")
    if best is not None:
        paragraph += (
            f" The measure with the largest |Kendall τ| is **{best['measure']}** (τ = {_fmt(best['kendall_tau'])}"
            f"{_interval(best, 'kendall_tau')}, adjusted R² = {_fmt(best['adjusted_r2'])}"
            f"{_interval(best, 'adjusted_r2')}, CMI = {_fmt(best['cmi'])})."
        )
    null_se = kendall_tau_se(len(models))
    paragraph += (
        f" The paper's s_τ = {null_se:.4f} is the standard error of τ under the null hypothesis of no association "
        f"(the same for every measure): |τ| below 2 s_τ = {2 * null_se:.4f} is indistinguishable from chance. "
        f"The intervals are {int(round(100 * CONFIDENCE))}% bootstrap intervals over models."
    )
    best_psi = _best_row(t2, "psi")
    if best_psi is not None and axes:
        paragraph += f" The largest |ψ| is that of {best_psi['measure']} (ψ = {_fmt(best_psi['psi'])})."
    if double_descent:
        paragraph += " This is a double-descent zoo: Table 1 also gives τ against test loss and test error."

    lines = [f"# Analysis of `{experiment or 'unnamed'}`", "", paragraph, "", "## Warnings", ""]
    lines += [f"- **{w}**" for w in warnings] or ["- none: the target's spread exceeds twice its test-set noise, every "
                                                  "measure covers the whole zoo, and no measure is constant, degenerate, "
                                                  "dominated by estimation noise or confounded by convergence"]
    if against:
        lines += ["", *against]
    lines += ["", "## Tables", ""]
    lines += [
        "- [Table 1](table1.md) ([csv](table1.csv)): per measure, Kendall's τ with the target, `kendall_tau_se` "
        "(the paper's s_τ, the null-hypothesis standard error, not an interval), adjusted R², 10-fold "
        "cross-validated R², conditional mutual information (Jiang and PGDL variants)"
        + ("; τ against test loss and test error" if double_descent else "")
        + "; bootstrap intervals of τ and adjusted R² (`*_ci_low`, `*_ci_high`).",
        "- [Table 2](table2.md) ([csv](table2.csv)): τ when only one hyperparameter varies (ψ_i), overall τ, ψ "
        "and its bootstrap interval.",
        f"- [Table 3](table3.md) ([csv](table3.csv)): conditional mutual information between {anchor} "
        "and each other measure.",
    ]
    if any(p.endswith("el2n.png") for _, p in figures):
        lines.append("- [EL2N groups](el2n_groups.csv) and [EL2N noisy vs clean](el2n_noisy.csv): the numbers of the EL2N figure.")
    if settings_csv:
        lines.append(f"- [Measure settings]({settings_csv}): the settings and details recorded with each family's rows, "
                     "one row per distinct (family, settings), with the number of models.")
    lines += list(body)

    lines += ["", "## Settings", "", "### Analysis", ""]
    lines += [
        f"- target: `{target}` ({TARGETS[target][0]})",
        f"- grid axes: {', '.join(axes) if axes else 'none'}",
        f"- held fixed within granulated-Kendall groups: {', '.join(hold_fixed) if hold_fixed else 'nothing'}",
        "- Kendall's τ: τ-a over all pairs, ties count 0; s_τ = sqrt(2(2n+5)/(9n(n−1))) (the paper's null-hypothesis "
        "standard error, column `kendall_tau_se`)",
        f"- intervals: scipy.stats.bootstrap over models, {N_RESAMPLES} resamples, {METHOD} method, "
        f"{int(round(100 * CONFIDENCE))}% level, seed {SEED}, for τ, univariate adjusted R² and ψ",
        "- ψ: groups with fewer than 2 models or a constant target skipped (counts below)",
        "- CMI (Jiang): ordered pairs of distinct models, target ties dropped, measure ties a third outcome, "
        "conditioning sets of size 0, 1, 2 weighted by pair counts, sets with H(V_g|U_S) = 0 skipped, minimum over sets",
        "- CMI (PGDL): all ordered pairs including self, ties as '−', sets of exactly two hyperparameters, "
        "unweighted means over cells, log2(p + 1e-12) in the entropy, minimum over sets",
        f"- R²: least squares with intercept; cross-validated R² pooled over out-of-fold predictions of "
        f"{CV_FOLDS}-fold KFold (shuffle, seed {CV_SEED}); the same folds give the regression-derived measures",
    ]
    flat = flatten_settings(options.settings or {})
    lines += ["", "### Run settings", ""]
    lines += [f"- `{key}`: `{value}`" for key, value in flat] or ["- none were passed"]
    recorded = _resolved_settings(measure_settings(measures, ids))
    lines += ["", "### Measure settings recorded in the store", ""]
    if recorded.empty:
        lines.append("- none recorded")
    else:
        lines.append(to_markdown(recorded))
        if settings_csv:
            lines.append(f"Per-model details (loss evaluations, estimates) are in [{settings_csv}]({settings_csv}).")

    lines += ["", "## Granulated Kendall groups", ""]
    if axes:
        frame = models[[*axes, *hold_fixed]].copy()
        frame["_target"] = target_series
        frame["_measure"] = target_series
        groups = granulated_kendall(frame, "_measure", "_target", axes, hold_fixed=hold_fixed)
        counts = pd.DataFrame({
            "axis": list(axes),
            "groups_used": [groups.groups_used[a] for a in axes],
            "groups_skipped": [groups.groups_skipped[a] for a in axes],
        })
        lines.append(to_markdown(counts))
    else:
        lines.append("- no axis varies, so ψ is undefined")

    lines += list(sections)
    coverage = measure_coverage(measures, ids) if "measure" in measures.columns else pd.DataFrame()
    lines += ["", "## Measure coverage (completed trials)", ""]
    lines.append(to_markdown(coverage) if not coverage.empty else "- no measure rows")
    if partial:
        left_out = pd.DataFrame({"measure": sorted(partial), "models": [partial[m] for m in sorted(partial)],
                                 "of": len(models)})
        lines += ["", "Left out of Tables 1–3 (computed on fewer models than the zoo holds; "
                  "`genzoo analyze --include-partial` keeps them):", "", to_markdown(left_out)]
    lines += ["", "## Notes", ""]
    lines += [f"- {note}" for note in notes] or ["- none"]
    lines += ["", f"Standard error of τ for n = {len(models)}: s_τ = {kendall_tau_se(len(models)):.4f}.", ""]
    return "\n".join(lines)

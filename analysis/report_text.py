"""The text of ``report.md``: the summary paragraph, the tables, the figures, the settings
and the notes of one analysis, as Markdown."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from analysis.data import SEED_COLUMN, TARGETS, measure_coverage, measure_settings
from analysis.kendall import granulated_kendall, kendall_tau_se
from analysis.regression import CV_FOLDS, CV_SEED
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


def _fmt(value: object) -> str:
    if isinstance(value, (float, np.floating)):
        return "–" if math.isnan(value) else f"{float(value):.4f}"
    return str(value)


def report_text(
    *,
    anchor: str,
    experiment: str,
    trials: pd.DataFrame,
    models: pd.DataFrame,
    target: str,
    target_series: pd.Series,
    axes: Sequence[str],
    hold_fixed: Sequence[str],
    t1: pd.DataFrame,
    t2: pd.DataFrame,
    t3: pd.DataFrame,
    figures: List[Tuple[str, str]],
    settings: Mapping[str, object],
    measures: pd.DataFrame,
    notes: List[str],
    double_descent: bool,
    sections: Sequence[str] = (),
) -> str:
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
    best = _best_row(t1, "kendall_tau")
    if best is not None:
        paragraph += (
            f" The measure with the largest |Kendall τ| is **{best['measure']}** (τ = {_fmt(best['kendall_tau'])}, "
            f"s_τ = {_fmt(best['kendall_tau_se'])}, adjusted R² = {_fmt(best['adjusted_r2'])}, "
            f"CMI = {_fmt(best['cmi'])})."
        )
    best_psi = _best_row(t2, "psi")
    if best_psi is not None and axes:
        paragraph += f" The largest |ψ| is that of {best_psi['measure']} (ψ = {_fmt(best_psi['psi'])})."
    if double_descent:
        paragraph += " This is a double-descent zoo: Table 1 also gives τ against test loss and test error."

    lines = [f"# Analysis of `{experiment or 'unnamed'}`", "", paragraph, "", "## Tables", ""]
    lines += [
        "- [Table 1](table1.md) ([csv](table1.csv)): per measure, Kendall's τ with the target and its standard "
        "error, adjusted R², 10-fold cross-validated R², conditional mutual information (Jiang and PGDL variants)"
        + ("; τ against test loss and test error" if double_descent else "") + ".",
        "- [Table 2](table2.md) ([csv](table2.csv)): τ when only one hyperparameter varies (ψ_i), overall τ, ψ.",
        f"- [Table 3](table3.md) ([csv](table3.csv)): conditional mutual information between {anchor} "
        "and each other measure.",
    ]
    if any(p.endswith("el2n.png") for _, p in figures):
        lines.append("- [EL2N groups](el2n_groups.csv) and [EL2N noisy vs clean](el2n_noisy.csv): the numbers of the EL2N figure.")
    lines += ["", "### Table 1", "", to_markdown(t1), "## Figures", ""]
    for title, path in figures:
        lines.append(f"- [{title}]({path})")
    for title, path in figures:
        if not Path(path).name.startswith("scatter_"):
            lines += ["", f"![{title}]({path})"]

    lines += ["", "## Settings", "", "### Analysis", ""]
    lines += [
        f"- target: `{target}` ({TARGETS[target][0]})",
        f"- grid axes: {', '.join(axes) if axes else 'none'}",
        f"- held fixed within granulated-Kendall groups: {', '.join(hold_fixed) if hold_fixed else 'nothing'}",
        "- Kendall's τ: τ-a over all pairs, ties count 0; s_τ = sqrt(2(2n+5)/(9n(n−1))) (null hypothesis)",
        "- ψ: groups with fewer than 2 models or a constant target skipped (counts below)",
        "- CMI (Jiang): ordered pairs of distinct models, target ties dropped, measure ties a third outcome, "
        "conditioning sets of size 0, 1, 2 weighted by pair counts, sets with H(V_g|U_S) = 0 skipped, minimum over sets",
        "- CMI (PGDL): all ordered pairs including self, ties as '−', sets of exactly two hyperparameters, "
        "unweighted means over cells, log2(p + 1e-12) in the entropy, minimum over sets",
        f"- R²: least squares with intercept; cross-validated R² pooled over out-of-fold predictions of "
        f"{CV_FOLDS}-fold KFold (shuffle, seed {CV_SEED}); the same folds give the regression-derived measures",
    ]
    flat = flatten_settings(settings)
    lines += ["", "### Run settings", ""]
    lines += [f"- `{key}`: `{value}`" for key, value in flat] or ["- none were passed"]
    recorded = measure_settings(measures, ids)
    lines += ["", "### Measure settings recorded in the store", ""]
    if recorded.empty:
        lines.append("- none recorded")
    else:
        lines.append(to_markdown(recorded))

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
    lines += ["", "## Notes", ""]
    lines += [f"- {note}" for note in notes] or ["- none"]
    lines += ["", f"Standard error of τ for n = {len(models)}: s_τ = {kendall_tau_se(len(models)):.4f}.", ""]
    return "\n".join(lines)

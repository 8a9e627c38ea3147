"""The report's main section "Robust sign error" (Dziugaite et al. 2020), beside Tables 1–2:
per measure and hyperparameter the mean, 90th percentile and maximum sign error over coupled
environments (:mod:`analysis.sign_error`, where the definitions and constants live), and the
paper's figure of their cumulative distribution.

Writes ``sign_error.md`` / ``sign_error.csv`` (one row per measure and hyperparameter),
``sign_error_environments.csv`` (ψ_e, weight and effective sample size of every measure in every
environment, to re-threshold with pandas) and ``figures/sign_error_cdf.png`` / ``.svg`` when
some environment is kept. When none is (one seed per configuration, or coupled gaps within the
test-set noise, as on the demo), an unfiltered table beside it, labelled as not the paper's rule
(every pair at weight 1, every environment kept): ``sign_error_unfiltered.csv``,
``sign_error_environments_unfiltered.csv`` and ``figures/sign_error_cdf_unfiltered.png``.
"""

from __future__ import annotations

import math
from typing import List, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.figures import figure_files
from analysis.section import SectionInput, SectionOutput
from analysis.sign_error import (
    ALL,
    NOISY_TARGETS,
    PERCENTILE,
    cdf,
    environment_weights,
    sign_error_table,
)
from analysis.tables import to_csv_text, to_markdown

FIGURE = "figures/sign_error_cdf"
FIGURE_UNFILTERED = "figures/sign_error_cdf_unfiltered"
# Points of [0, 1] at which the figure evaluates each cumulative distribution.
CDF_POINTS = 101


def _cell(row: pd.Series) -> str:
    if not row["kept"]:
        return "–"
    return f"{row['mean']:.2f} / {row['p90']:.2f} / {row['max']:.2f}"


def sign_error_cdf_figure(environments: pd.DataFrame, hyperparameters: Sequence[str], min_ess: float,
                          heading: str = "") -> Figure:
    """The paper's figure of the robust sign-error analysis: one panel per hyperparameter (all of
    them first), one column per measure (ordered by the mean sign error over all kept
    environments, then by name), the colour at height y the share of the kept environments
    whose sign error ψ_e is at most y (the cumulative distribution over environments), with
    the mean (dotted), the 90th percentile (dashed) and the maximum (solid) drawn across the
    column; a × where no environment of the measure is kept. ``heading`` goes before the title."""
    kept = environments[environments["kept"].astype(bool)]
    names = list(pd.unique(environments["measure"]))
    means = {name: kept.loc[kept["measure"] == name, "sign_error"].mean() for name in names}
    names.sort(key=lambda name: (math.isnan(means[name]), 0.0 if math.isnan(means[name]) else means[name], name))
    rows = [ALL, *hyperparameters]
    grid = np.linspace(0.0, 1.0, CDF_POINTS)
    figure = Figure(figsize=(max(6.0, 0.32 * len(names) + 2.5), 1.5 * len(rows) + 1.6), layout="constrained")
    figure.get_layout_engine().set(h_pad=0.1, w_pad=0.1)  # inches of margin: rotated names are not clipped
    axes = figure.subplots(len(rows), 1, sharex=True, squeeze=False)[:, 0]
    image = None
    for axis, row in zip(axes, rows):
        part = kept if row == ALL else kept[kept["hyperparameter"] == row]
        shares = np.full((CDF_POINTS, len(names)), np.nan)
        for i, name in enumerate(names):
            values = part.loc[part["measure"] == name, "sign_error"].to_numpy(dtype=float)
            if len(values) == 0:
                axis.plot([i], [0.5], marker="x", color="tab:red", markersize=6, linestyle="none")
                continue
            shares[:, i] = cdf(values, grid)
            for value, style, colour in ((values.mean(), ":", "tab:orange"),
                                         (np.percentile(values, PERCENTILE), "--", "magenta"),
                                         (values.max(), "-", "limegreen")):
                axis.hlines(value, i - 0.5, i + 0.5, colors=colour, linestyles=style, linewidth=1.5)
        image = axis.imshow(shares, origin="lower", aspect="auto", extent=(-0.5, len(names) - 0.5, 0.0, 1.0),
                            cmap="Blues_r", vmin=0.0, vmax=1.0, interpolation="nearest")
        n_kept = int(part.loc[part["measure"] == names[0]].shape[0]) if names else 0
        axis.set_ylabel(f"{row}\n({n_kept} env.)", fontsize=8)
        # A little room beyond [0, 1], so that lines at 0 and 1 show.
        axis.set_ylim(-0.04, 1.04)
        axis.set_yticks([0.0, 0.5, 1.0])
        axis.tick_params(axis="y", labelsize=7)
    axes[-1].set_xticks(np.arange(len(names)), names, rotation=90, fontsize=7)
    axes[-1].set_xlim(-0.5, len(names) - 0.5)
    axes[0].set_title(f"{heading}Sign error ψ_e over coupled environments (kept: ESS ≥ {min_ess:g})\n"
                      f"dotted: mean, dashed: {PERCENTILE:g}th percentile, solid: max; ×: none kept", fontsize=8)
    if image is not None:
        bar = figure.colorbar(image, ax=list(axes), fraction=0.03, pad=0.01)
        bar.set_label("share of environments with sign error ≤ y", fontsize=7)
        bar.ax.tick_params(labelsize=7)
    return figure


def _wide(summary: pd.DataFrame, axes: Sequence[str]) -> pd.DataFrame:
    """One row per measure, one column per hyperparameter (``all`` first): mean / p90 / max."""
    wide = pd.DataFrame({"measure": list(pd.unique(summary["measure"]))})
    for name in [ALL, *axes]:
        part = summary[summary["hyperparameter"] == name].set_index("measure")
        wide[name] = [_cell(part.loc[m]) for m in wide["measure"]]
    return wide


def _unfiltered(zoo, axes: Sequence[str], target: str, files: dict, figures: list) -> List[str]:
    """When the paper's rule keeps no environment (a zoo of few seeds, or gaps closer than the
    test set can tell apart): the same statistics with every coupled pair counted at weight 1
    and every environment kept (ESS ≥ 1), labelled as not the paper's rule. The paper's table is
    still the one that counts; this one shows which way each measure leans on this zoo."""
    summary, environments = sign_error_table(zoo.models, zoo.measures, zoo.target_series, axes, None,
                                             min_ess=1.0)
    if not environments["kept"].any():
        return []
    files["sign_error_unfiltered.csv"] = to_csv_text(summary).encode()
    files["sign_error_environments_unfiltered.csv"] = to_csv_text(environments).encode()
    pairs = environments.groupby("environment", sort=False)["pairs"].max()
    heading = "Unfiltered, not the paper's rule: "
    files.update(figure_files(sign_error_cdf_figure(environments, axes, 1.0, heading), FIGURE_UNFILTERED))
    title = "unfiltered (not the paper's rule): cumulative distribution of the sign error over coupled environments"
    figures.append((title, f"{FIGURE_UNFILTERED}.png"))
    return [
        "", "**Unfiltered, not the paper's rule.** The same statistics with every coupled pair counted at weight 1 "
        f"(no test-set noise filter) and every environment kept (ESS ≥ 1): {len(pairs)} environments of "
        + (f"{int(pairs.min())} pair(s) each" if pairs.min() == pairs.max() else
           f"{int(pairs.min())} to {int(pairs.max())} pairs") + ". An environment of one pair has ψ_e of 0, ½ or 1, so the "
        f"mean is the share of coupled pairs a measure orders against the {target}, and the maximum is 1 as soon as "
        "one pair is misordered; pairs whose difference is within the test-set noise count as much as the others. "
        "Read it as which way each measure leans on this zoo, not as the paper's robust sign error.", "",
        f"Each cell: mean / {PERCENTILE:g}th percentile / max of ψ_e over every environment.", "",
        to_markdown(_wide(summary, axes)), "", f"![{title}]({FIGURE_UNFILTERED}.png)", "",
        "[csv](sign_error_unfiltered.csv); every environment: "
        "[sign_error_environments_unfiltered.csv](sign_error_environments_unfiltered.csv).", ""]


def sign_error_section(section: SectionInput) -> SectionOutput:
    """The robust sign error of every Table 1 measure over the zoo's coupled environments
    (:func:`analysis.sign_error.sign_error_table` with the options' ``sign_error_min_weight`` and
    ``sign_error_min_ess``, the paper's by default), the counts of
    environments per hyperparameter, the files, and the figure when some environment is kept."""
    zoo, target, options = section.zoo, section.target, section.options
    axes = list(zoo.axes)
    test_examples = options.test_examples if target in NOISY_TARGETS else None
    min_weight, min_ess = options.sign_error_min_weight, options.sign_error_min_ess
    summary, environments = sign_error_table(zoo.models, zoo.measures, zoo.target_series, axes, test_examples,
                                             min_weight=min_weight, min_ess=min_ess)
    weights = environment_weights(zoo.models, zoo.target_series, axes, test_examples, min_weight=min_weight,
                                  min_ess=min_ess)
    files = {"sign_error.csv": to_csv_text(summary).encode(),
             "sign_error_environments.csv": to_csv_text(environments).encode()}
    if test_examples is not None:
        noise = (f"pairs whose order may be test-set noise are left out and the others weighted by "
                 f"(p − {min_weight:g})₊, p = (1 − 2 exp(−n d²/2))²₊ the Hoeffding lower bound on the probability "
                 f"that two {target}s d apart are in their true order (n = {test_examples} test examples)")
    elif target in NOISY_TARGETS:
        noise = "the test-set size is unknown, so no pair is filtered as noise (every pair has weight 1)"
    else:
        noise = f"the {target} has no test-set noise model, so no pair is filtered as noise (every pair has weight 1)"
    caption = (
        f"Dziugaite et al. 2020 (\"In search of robust measures of generalization\"): an environment is a pair of "
        f"configurations that differ in exactly one grid axis; its samples are every model of one against every model "
        f"of the other (all seed pairs); a sample's sign error is (1 − sgn ΔC · sgn Δ{target})/2 (ties ½); {noise}; "
        f"an environment's sign error ψ_e is the weighted mean over its samples and it is kept when its effective "
        f"sample size (Σv)²/Σv² is at least {min_ess:g}. Per measure and hyperparameter: the mean, the "
        f"{PERCENTILE:g}th percentile (`p90`) and the maximum (`max`, the robust sign error) of ψ_e over the kept "
        f"environments. 0 is a perfect ordering, 0.5 a coin flip, 1 always wrong.\n\n")
    files["sign_error.md"] = (f"# Robust sign error over coupled environments, target {target}\n\n{caption}"
                              f"{to_markdown(summary)}").encode()

    counts = pd.DataFrame([{
        "hyperparameter": name,
        "environments": int(len(part)),
        "pass_noise_filter": int((part["weight"] > 0).sum()),
        "kept": int(part["kept"].sum()),
        "largest_ess": float(part["ess"].max()) if len(part) else math.nan,
    } for name, part in [*((a, weights[weights["hyperparameter"] == a]) for a in axes), (ALL, weights)]])
    markdown: List[str] = ["", "### Robust sign error (Dziugaite et al. 2020)", "", caption.strip(), "",
                           to_markdown(counts), ""]
    notes: List[str] = []
    figures = []
    n_kept = int(weights["kept"].sum())
    if not axes:
        markdown.append("No grid axis varies, so there is no coupled environment.")
    elif n_kept == 0:
        seeds = zoo.models.groupby(axes, dropna=False).size().max() if len(zoo.models) else 0
        markdown.append(
            f"No environment reaches the effective sample size {min_ess:g}: with at most {seeds} model(s) per "
            f"configuration an environment has at most {seeds * seeds} sample(s), and "
            f"{int((weights['weight'] > 0).sum())} of {len(weights)} environments have any pair whose {target} "
            f"difference exceeds the test-set noise. The table stays empty; train more seeds per configuration "
            f"(at least {math.ceil(math.sqrt(min_ess))} for ESS {min_ess:g}). Every environment's ψ_e, weight and ESS are in "
            f"[sign_error_environments.csv](sign_error_environments.csv).")
        unfiltered = _unfiltered(zoo, axes, target, files, figures)
        notes.append(f"sign error: no coupled environment has an effective sample size of {min_ess:g} or more; "
                     f"the robust sign-error table is empty"
                     + ("; an unfiltered table (every pair at weight 1, not the paper's rule) is shown beside it"
                        if unfiltered else ""))
        markdown += unfiltered
    else:
        markdown += [f"Each cell: mean / {PERCENTILE:g}th percentile / max of ψ_e over the kept environments "
                     f"(– none kept).", "", to_markdown(_wide(summary, axes)), ""]
        files.update(figure_files(sign_error_cdf_figure(environments, axes, min_ess), FIGURE))
        title = "cumulative distribution of the sign error over coupled environments, per hyperparameter"
        figures.append((title, f"{FIGURE}.png"))
        markdown += [f"![{title}]({FIGURE}.png)", ""]
    markdown.append("[Table](sign_error.md) ([csv](sign_error.csv)); every environment: "
                    "[sign_error_environments.csv](sign_error_environments.csv).")
    markdown.append("")
    return SectionOutput(markdown=markdown, files=files, notes=notes, frames={"sign_error": summary},
                         figures=figures)

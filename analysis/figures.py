"""Figures as PNG bytes, drawn with matplotlib's object API on the Agg canvas (no pyplot, so
no global backend state and no display needed).

- each measure against the target (one scatter per measure);
- the double-descent plot for width sweeps: test loss and every measure against width
  (first paper, Figure 1a / Figure 3a);
- pruning versus random perturbation: train and test loss against the fraction of weights
  kept (first paper, Figure 2 / Figure 5);
- EL2N: mean train loss by EL2N-percentile group (20 groups) and noisy versus clean examples
  (third paper, Figures 2 and 5, per label-noise level); the noisy panels only when some
  labels are noisy;
- the overview: τ and ψ of every measure with their bootstrap intervals as error bars;
- learning curves: train and test loss and accuracy per epoch for a sample of models.

Every figure is written as PNG and as SVG (:func:`figure_files`). A measure axis is
logarithmic when the measure spans at least ``LOG_DECADES`` = 2 decades (:func:`value_scale`).
"""

from __future__ import annotations

import io
import math
import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis.data import model_labels
from analysis.errors import AnalysisError

DPI = 100
EL2N_GROUPS = 20
# More line groups than this in the double-descent plot and the curves are pooled instead.
MAX_LINES = 8
PRUNING_COLUMNS = ("trial_id", "kept_fraction", "intervention", "split", "loss")
EL2N_COLUMNS = ("trial_id", "index", "score", "noisy")
EL2N_LOSS_COLUMNS = ("loss", "train_loss")
# A measure spanning at least this many decades gets a logarithmic axis.
LOG_DECADES = 2.0
# At most this many distinct values of the colouring hyperparameter get discrete colours.
MAX_DISCRETE_COLOURS = 10
# Models drawn in the learning-curve figure.
LEARNING_CURVE_MODELS = 8
# An artist with more points (or lines) than this is rasterized in the SVG (an embedded bitmap
# at DPI; the PNG is the same either way): an SVG of 10,000 markers takes seconds to write
# and megabytes to store.
RASTERIZE_ABOVE = 2_000
EPOCH_COLUMNS = ("trial_id", "epoch", "train_loss", "train_acc", "test_loss", "test_acc")


def png_bytes(figure: Figure) -> bytes:
    """The figure as PNG; the "Software" metadata is left out so the bytes do not depend on
    the matplotlib version."""
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def svg_bytes(figure: Figure) -> bytes:
    """The figure as SVG, without the date and with fixed element ids, so that equal figures
    give equal bytes."""
    import matplotlib

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "genzoo", "svg.fonttype": "none"}):
        figure.savefig(buffer, format="svg", dpi=DPI, metadata={"Date": None, "Creator": None})
    return buffer.getvalue()


def figure_files(figure: Figure, stem: str) -> Dict[str, bytes]:
    """``{stem}.png`` and ``{stem}.svg`` of one figure."""
    return {f"{stem}.png": png_bytes(figure), f"{stem}.svg": svg_bytes(figure)}


def value_scale(values: Sequence[float]) -> Tuple[str, Dict[str, float]]:
    """(scale, keyword arguments) for an axis of ``values``: ``"log"`` when every finite value is
    positive and max/min ≥ 10^LOG_DECADES; ``"symlog"`` (linear within ± the smallest non-zero
    |value|) when some are zero or negative and max|v| / min non-zero |v| ≥ 10^LOG_DECADES;
    else ``"linear"``. ``pac_bayes_flat`` spanning 0 to 170,000 gets a symlog axis."""
    array = np.asarray(values, dtype=float)
    array = array[np.isfinite(array)]
    magnitudes = np.abs(array[array != 0])
    if len(magnitudes) < 2 or magnitudes.max() < magnitudes.min() * 10 ** LOG_DECADES:
        return "linear", {}
    if np.all(array > 0):
        return "log", {}
    return "symlog", {"linthresh": float(magnitudes.min())}


def _set_scale(axis, which: str, values: Sequence[float]) -> None:
    scale, kwargs = value_scale(values)
    (axis.set_xscale if which == "x" else axis.set_yscale)(scale, **kwargs)


def slug(name: str) -> str:
    """A file-name-safe version of a measure name (``margin/b1/q1`` -> ``margin_b1_q1``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("_") or "measure"


def scatter_figure(measure: pd.Series, target: pd.Series, name: str, target_label: str, tau: float,
                   colour: Optional[pd.Series] = None) -> Figure:
    """One measure (x) against the target (y), one point per model, coloured by the
    hyperparameter ``colour`` (a named Series per model; discrete colours and a legend for at
    most MAX_DISCRETE_COLOURS values, else a colour bar); the x axis is logarithmic when the
    measure spans decades (:func:`value_scale`)."""
    common = measure.dropna().index.intersection(target.dropna().index)
    figure = Figure(figsize=(4.8, 3.6))
    axis = figure.add_subplot()
    x, y = measure.loc[common], target.loc[common]
    if colour is None:
        axis.scatter(x, y, s=14, alpha=0.75, color="tab:blue", edgecolors="none", rasterized=len(x) > RASTERIZE_ABOVE)
    else:
        _coloured_scatter(figure, axis, x, y, colour.reindex(common))
    _set_scale(axis, "x", x.to_numpy())
    axis.set_xlabel(name)
    axis.set_ylabel(target_label)
    title = f"{name}  (n = {len(common)}"
    title += f", τ = {tau:.3f})" if math.isfinite(tau) else ")"
    axis.set_title(title, fontsize=9)
    axis.grid(True, alpha=0.3)
    figure.tight_layout()
    return figure


def _coloured_scatter(figure: Figure, axis, x: pd.Series, y: pd.Series, colour: pd.Series) -> None:
    from matplotlib import cm
    from matplotlib.colors import Normalize

    levels = list(pd.unique(colour))
    try:
        levels = sorted(levels)
    except TypeError:
        levels = sorted(levels, key=str)
    numeric = pd.api.types.is_numeric_dtype(colour) and not pd.api.types.is_bool_dtype(colour)
    if len(levels) <= MAX_DISCRETE_COLOURS or not numeric:
        palette = cm.tab10 if len(levels) <= MAX_DISCRETE_COLOURS else cm.viridis
        for position, level in enumerate(levels):
            mask = (colour == level).to_numpy() if level == level else colour.isna().to_numpy()
            shade = palette(position if len(levels) <= MAX_DISCRETE_COLOURS else position / max(len(levels) - 1, 1))
            axis.scatter(x[mask], y[mask], s=14, alpha=0.8, color=shade, edgecolors="none", label=str(level),
                         rasterized=len(x) > RASTERIZE_ABOVE)
        axis.legend(title=str(colour.name), fontsize=6, title_fontsize=7, loc="best")
        return
    norm = Normalize(vmin=float(colour.min()), vmax=float(colour.max()))
    points = axis.scatter(x, y, s=14, alpha=0.8, c=colour.astype(float), cmap="viridis", norm=norm, edgecolors="none",
                          rasterized=len(x) > RASTERIZE_ABOVE)
    figure.colorbar(points, ax=axis, label=str(colour.name))


def overview_figure(t1: pd.DataFrame, t2: pd.DataFrame, null_se: float) -> Figure:
    """τ (Table 1) and ψ (Table 2) of every measure with their bootstrap intervals as error
    bars, measures sorted by τ; the band ±2 s_τ (the paper's null-hypothesis standard error)
    marks the τ indistinguishable from chance."""
    table = t1[["measure", "kendall_tau", "kendall_tau_ci_low", "kendall_tau_ci_high"]].merge(
        t2[["measure", "psi", "psi_ci_low", "psi_ci_high"]] if "psi_ci_low" in t2.columns else
        pd.DataFrame(columns=["measure", "psi", "psi_ci_low", "psi_ci_high"]), on="measure", how="left")
    table = table.sort_values(["kendall_tau", "measure"], kind="stable").reset_index(drop=True)
    positions = np.arange(len(table))
    figure = Figure(figsize=(7.0, max(2.5, 0.28 * len(table) + 1.2)))
    axis = figure.add_subplot()
    if math.isfinite(null_se):
        axis.axvspan(-2 * null_se, 2 * null_se, color="0.85", label=f"±2 s_τ (null) = ±{2 * null_se:.3f}")
    for column, low, high, offset, label, colour in (
        ("kendall_tau", "kendall_tau_ci_low", "kendall_tau_ci_high", -0.15, "τ", "tab:blue"),
        ("psi", "psi_ci_low", "psi_ci_high", 0.15, "ψ", "tab:orange"),
    ):
        values = table[column].astype(float).to_numpy()
        if not np.isfinite(values).any():
            continue
        # The bars are drawn from the interval's ends, not as ± errors: a percentile interval
        # need not contain the estimate.
        axis.hlines(positions + offset, table[low].astype(float), table[high].astype(float), color=colour,
                    linewidth=1.2)
        axis.plot(values, positions + offset, "o", markersize=3, color=colour, label=f"{label} (95% bootstrap interval)")
    axis.axvline(0.0, color="0.4", linewidth=0.8)
    axis.set_yticks(positions, table["measure"].astype(str).tolist(), fontsize=7)
    axis.set_xlim(-1.05, 1.05)
    axis.set_xlabel("Kendall τ / granulated ψ with the target")
    axis.grid(True, axis="x", alpha=0.3)
    axis.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    return figure


def learning_curve_sample(target: pd.Series, count: int = LEARNING_CURVE_MODELS) -> List[str]:
    """``count`` models evenly spaced in the ranking by the target (ties by key), so the sample
    spans the zoo from the smallest to the largest target."""
    ordered = sorted(target.dropna().index, key=lambda key: (float(target[key]), str(key)))
    if len(ordered) <= count:
        return ordered
    picks = np.unique(np.round(np.linspace(0, len(ordered) - 1, count)).astype(int))
    return [ordered[i] for i in picks]


def learning_curves_figure(epochs: pd.DataFrame, target: pd.Series, target_label: str) -> Figure:
    """Train and test loss (left) and accuracy (right) per epoch of each model in ``epochs``
    (the store's epochs table), one colour per model, coloured by its target value; solid
    lines train, dashed test. The loss axis is logarithmic when it spans decades."""
    check_columns(epochs, EPOCH_COLUMNS, "epochs")
    from matplotlib import cm
    from matplotlib.colors import Normalize

    figure = Figure(figsize=(10.0, 3.8))
    values = target.astype(float)
    norm = Normalize(vmin=float(values.min()), vmax=float(values.max()))
    loss_axis = figure.add_subplot(1, 2, 1)
    acc_axis = figure.add_subplot(1, 2, 2)
    for model, group in epochs.groupby(model_labels(epochs), sort=True):
        group = group.sort_values("epoch")
        shade = cm.viridis(norm(float(values.get(model, np.nan))))
        for split, style in (("train", "-"), ("test", "--")):
            for axis, metric in ((loss_axis, f"{split}_loss"), (acc_axis, f"{split}_acc")):
                # Epochs without an evaluation (eval_every > 1) have no value: connect the rest.
                points = group[["epoch", metric]].dropna()
                axis.plot(points["epoch"], points[metric], style, color=shade, linewidth=0.9, marker=".",
                          markersize=2)
    losses = epochs[["train_loss", "test_loss"]].to_numpy(dtype=float).ravel()
    _set_scale(loss_axis, "y", losses)
    loss_axis.set_ylabel("loss (solid train, dashed test)")
    acc_axis.set_ylabel("accuracy (solid train, dashed test)")
    for axis in (loss_axis, acc_axis):
        axis.set_xlabel("epoch")
        axis.grid(True, alpha=0.3)
    loss_axis.set_title(f"learning curves of {model_labels(epochs).nunique()} models", fontsize=9)
    figure.colorbar(cm.ScalarMappable(norm=norm, cmap=cm.viridis), ax=acc_axis, label=target_label)
    figure.tight_layout()
    return figure


def _line_keys(completed: pd.DataFrame, axes: Sequence[str], x: str) -> List[str]:
    keys = [a for a in axes if a != x]
    if not keys:
        return []
    if completed[keys].drop_duplicates().shape[0] > MAX_LINES:
        return []
    return keys


def _mean_se(frame: pd.DataFrame, by: List[str], value: str) -> pd.DataFrame:
    grouped = frame.groupby(by, dropna=False, sort=True)[value]
    summary = grouped.agg(["mean", "std", "count"]).reset_index()
    summary["se"] = (summary["std"] / np.sqrt(summary["count"])).fillna(0.0)
    return summary


def _label(keys: List[str], values: Tuple) -> str:
    return ", ".join(f"{k}={v}" for k, v in zip(keys, values)) if keys else "all models"


def double_descent_figure(
    completed: pd.DataFrame, curves: Dict[str, pd.Series], axes: Sequence[str], x: str = "width"
) -> Figure:
    """Each entry of ``curves`` (test loss first, then the measures) against ``x``: mean ± one
    standard error over the models (seeds) at each width, one line per combination of the
    other axes when there are at most MAX_LINES of them, else pooled."""
    keys = _line_keys(completed, axes, x)
    n_panels = len(curves)
    n_cols = min(4, n_panels)
    n_rows = math.ceil(n_panels / n_cols)
    figure = Figure(figsize=(3.6 * n_cols, 2.8 * n_rows))
    for position, (name, values) in enumerate(curves.items(), start=1):
        axis = figure.add_subplot(n_rows, n_cols, position)
        frame = completed[[x, *keys]].copy()
        frame["value"] = values.reindex(frame.index).astype(float)
        frame = frame[np.isfinite(frame["value"].to_numpy())]
        if frame.empty:
            axis.set_title(f"{name} (no values)", fontsize=9)
            continue
        summary = _mean_se(frame, [*keys, x], "value")
        groups = summary.groupby(keys, dropna=False, sort=True) if keys else [((), summary)]
        for group_values, group in groups:
            group_values = group_values if isinstance(group_values, tuple) else (group_values,)
            group = group.sort_values(x)
            axis.plot(group[x], group["mean"], marker="o", markersize=3, label=_label(keys, group_values))
            axis.fill_between(group[x], group["mean"] - group["se"], group["mean"] + group["se"], alpha=0.2)
        _set_scale(axis, "y", frame["value"].to_numpy())
        axis.set_title(name, fontsize=9)
        axis.set_xlabel(x)
        axis.grid(True, alpha=0.3)
        if position == 1 and keys:
            axis.legend(fontsize=6)
    figure.tight_layout()
    return figure


def check_columns(table: pd.DataFrame, needed: Sequence[str], name: str) -> None:
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise AnalysisError(f"tables[{name!r}]: missing column(s) {', '.join(missing)}")


def pruning_curves_figure(curves: pd.DataFrame) -> Figure:
    """Loss after magnitude pruning and after a random perturbation of the same weights by a
    vector of the same norm, against the fraction of weights kept: mean ± one standard error
    over the trials, train and test split side by side (first paper, Figure 2)."""
    check_columns(curves, PRUNING_COLUMNS, "pruning_curves")
    # Train before test, as in the paper's figure; any other split after them.
    splits = sorted(curves["split"].astype(str).unique(), key=lambda s: ({"train": 0, "test": 1}.get(s, 2), s))
    figure = Figure(figsize=(4.2 * max(len(splits), 1), 3.4))
    for position, split in enumerate(splits, start=1):
        axis = figure.add_subplot(1, len(splits), position)
        part = curves[curves["split"].astype(str) == split]
        summary = _mean_se(part, ["intervention", "kept_fraction"], "loss")
        for intervention, group in summary.groupby("intervention", sort=True):
            group = group.sort_values("kept_fraction")
            axis.plot(group["kept_fraction"], group["mean"], marker="o", markersize=3, label=str(intervention))
            axis.fill_between(group["kept_fraction"], group["mean"] - group["se"], group["mean"] + group["se"], alpha=0.2)
        axis.set_xlabel("fraction of weights kept (unchanged)")
        axis.set_ylabel(f"{split} loss")
        axis.set_title(f"{split} ({model_labels(part).nunique()} models)", fontsize=9)
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    return figure


SPECTRUM_COLUMNS = ("trial_id", "rank", "eigenvalue")


def hessian_spectrum_figure(spectra: pd.DataFrame, target: pd.Series, target_label: str) -> Figure:
    """The top Hessian eigenvalues of every model against their rank (the ``hessian_eigenvalues``
    table of the flatness family), one line per model coloured by its ``target`` value. The
    y axis is logarithmic when every eigenvalue is positive, else symmetric-logarithmic."""
    check_columns(spectra, SPECTRUM_COLUMNS, "hessian_eigenvalues")
    from matplotlib import cm
    from matplotlib.collections import LineCollection
    from matplotlib.colors import Normalize

    figure = Figure(figsize=(5.2, 3.6))
    axis = figure.add_subplot(1, 1, 1)
    values = target.astype(float)
    norm = Normalize(vmin=float(values.min()), vmax=float(values.max()))
    # One collection of every model's line (in trial order, each by rank): one artist, not one
    # per model.
    ordered = spectra.assign(_model=model_labels(spectra)).sort_values(["_model", "rank"], kind="stable")
    trials, starts = np.unique(ordered["_model"].to_numpy(), return_index=True)
    points = np.column_stack([ordered["rank"].to_numpy(dtype=float), ordered["eigenvalue"].to_numpy(dtype=float)])
    lines = np.split(points, starts[1:])
    colours = cm.viridis(norm(values.reindex(trials).to_numpy(dtype=float)))
    axis.add_collection(LineCollection(lines, colors=colours, linewidths=0.8, alpha=0.8,
                                       rasterized=len(lines) > RASTERIZE_ABOVE))
    axis.autoscale_view()
    if (spectra["eigenvalue"] > 0).all():
        axis.set_yscale("log")
    else:
        axis.set_yscale("symlog")
    axis.set_xlabel("rank")
    axis.set_ylabel("Hessian eigenvalue")
    axis.set_title(f"top Hessian eigenvalues ({model_labels(spectra).nunique()} models)", fontsize=9)
    axis.grid(True, alpha=0.3)
    figure.colorbar(cm.ScalarMappable(norm=norm, cmap=cm.viridis), ax=axis, label=target_label)
    figure.tight_layout()
    return figure


def el2n_loss_column(el2n: pd.DataFrame) -> Optional[str]:
    for column in EL2N_LOSS_COLUMNS:
        if column in el2n.columns:
            return column
    return None


def el2n_summaries(
    el2n: pd.DataFrame, noise: Optional[pd.Series], groups: int = EL2N_GROUPS
) -> Tuple[pd.DataFrame, pd.DataFrame]:
    """(per-group table, noisy-vs-clean table) of the EL2N scores (third paper, §3 "Method":
    M = 20 subgroups by EL2N percentile).

    Per model, the examples are sorted by score (ties by ``index``) and cut into ``groups``
    equal-count groups: group k holds the examples of rank r (0-based, of m) with
    floor(r · groups / m) = k, i.e. the percentiles [100k/groups, 100(k+1)/groups). Per group:
    the mean per-example train loss of the final model (``loss`` or ``train_loss`` column;
    NaN when absent), the fraction of noisy (relabelled) examples and the mean score. Per
    noise level (``noise``: label_noise per model label; one level "all" when None) these are
    averaged over models, each model weighing the same. The second table has the mean loss
    and score of noisy and of clean examples and their share, per noise level.
    """
    check_columns(el2n, EL2N_COLUMNS, "el2n")
    loss_column = el2n_loss_column(el2n)
    frame = el2n.assign(_model=model_labels(el2n)).sort_values(["_model", "score", "index"], kind="stable")
    frame["loss_value"] = frame[loss_column].astype(float) if loss_column else np.nan
    frame["noisy"] = frame["noisy"].astype(bool)
    rank = frame.groupby("_model", sort=False).cumcount().to_numpy()
    size = frame.groupby("_model", sort=False)["score"].transform("size").to_numpy()
    frame["group"] = (rank * groups) // size
    levels = noise.reindex(frame["_model"]).to_numpy() if noise is not None else np.full(len(frame), "all", dtype=object)
    frame["label_noise"] = levels
    per_trial = frame.groupby(["label_noise", "_model", "group"], sort=True, dropna=False).agg(
        mean_loss=("loss_value", "mean"), noisy_fraction=("noisy", "mean"), mean_score=("score", "mean")
    ).reset_index()
    by_group = per_trial.groupby(["label_noise", "group"], sort=True, dropna=False).agg(
        mean_loss=("mean_loss", "mean"), noisy_fraction=("noisy_fraction", "mean"),
        mean_score=("mean_score", "mean"), trials=("_model", "nunique"),
    ).reset_index()
    by_group["percentile_low"] = 100.0 * by_group["group"] / groups
    by_group["percentile_high"] = 100.0 * (by_group["group"] + 1) / groups
    per_trial_noisy = frame.groupby(["label_noise", "_model", "noisy"], sort=True, dropna=False).agg(
        mean_loss=("loss_value", "mean"), mean_score=("score", "mean"), examples=("score", "size")
    ).reset_index()
    per_trial_noisy["share"] = per_trial_noisy["examples"] / per_trial_noisy.groupby(
        ["label_noise", "_model"], dropna=False
    )["examples"].transform("sum")
    by_noisy = per_trial_noisy.groupby(["label_noise", "noisy"], sort=True, dropna=False).agg(
        mean_loss=("mean_loss", "mean"), mean_score=("mean_score", "mean"),
        share=("share", "mean"), trials=("_model", "nunique"),
    ).reset_index()
    group_columns = ["label_noise", "group", "percentile_low", "percentile_high", "mean_loss",
                     "noisy_fraction", "mean_score", "trials"]
    return by_group[group_columns], by_noisy[["label_noise", "noisy", "share", "mean_loss", "mean_score", "trials"]]


def _noise_label(level: object) -> str:
    if isinstance(level, (float, np.floating)):
        return f"label noise {float(level):g}"
    return f"label noise {level}"


def el2n_figure(by_group: pd.DataFrame, by_noisy: pd.DataFrame, has_loss: bool) -> Figure:
    """Three panels: (a) mean train loss (or mean EL2N score when no per-example loss was
    stored) by EL2N-percentile group, (b) fraction of noisy examples by group, (c) mean train
    loss (or score) of noisy versus clean examples, one line / bar pair per noise level.
    Without any noisy example (no label noise) (b) and (c) would be empty: only (a) is drawn."""
    value = "mean_loss" if has_loss else "mean_score"
    value_label = "mean train loss" if has_loss else "mean EL2N score"
    any_noisy = bool(by_noisy["noisy"].astype(bool).any()) and bool((by_group["noisy_fraction"] > 0).any())
    panels = 3 if any_noisy else 1
    figure = Figure(figsize=(13.0 if any_noisy else 4.8, 3.6))
    by_level = list(by_group.groupby("label_noise", sort=True, dropna=False))
    axis = figure.add_subplot(1, panels, 1)
    for level, part in by_level:
        axis.plot(part["percentile_high"], part[value], marker="o", markersize=3, label=_noise_label(level))
    axis.set_xlabel("EL2N percentile group (upper edge, %)")
    axis.set_ylabel(value_label)
    axis.set_title(f"(a) {value_label} by EL2N group", fontsize=9)
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=7)
    if not any_noisy:
        figure.tight_layout()
        return figure
    axis = figure.add_subplot(1, 3, 2)
    for level, part in by_level:
        axis.plot(part["percentile_high"], part["noisy_fraction"], marker="o", markersize=3, label=_noise_label(level))
    axis.set_xlabel("EL2N percentile group (upper edge, %)")
    axis.set_ylabel("fraction of noisy examples")
    axis.set_title("(b) noisy examples by EL2N group", fontsize=9)
    axis.grid(True, alpha=0.3)
    axis = figure.add_subplot(1, 3, 3)
    levels = sorted(by_noisy["label_noise"].unique(), key=str)
    positions = np.arange(len(levels))
    for offset, noisy in ((-0.2, False), (0.2, True)):
        heights = [
            float(by_noisy[(by_noisy["label_noise"] == level) & (by_noisy["noisy"] == noisy)][value].mean())
            for level in levels
        ]
        axis.bar(positions + offset, np.nan_to_num(heights), width=0.4, label="noisy" if noisy else "clean")
    axis.set_xticks(positions, [_noise_label(level) for level in levels], fontsize=7)
    axis.set_ylabel(value_label)
    axis.set_title(f"(c) {value_label}: noisy vs clean", fontsize=9)
    axis.legend(fontsize=7)
    figure.tight_layout()
    return figure

"""The ``stability`` section: the generalization-stability tradeoff of a pruning-during-training
zoo (Bartoldson et al. 2020, "The generalization-stability tradeoff in neural network
pruning", Sections 3.1-3.4, Figures 2, 3, 5 and 6).

Per trial (from the trials rows and the ``events`` table the mode writes, one row per
(event, layer)): the **mean stability** over its events (one value per event: every layer of
an event shares t_pre and t_post; stability = 1 − (t_pre − t_post)/t_pre, Section 2), computed
here from the stored rows rather than stored on the model row; a ``scratch`` run has no events
and is 100% stable by definition (Figure 6); the **iterative rate**, the largest fraction of a
layer's original filters targeted by one event (the paper's "maximum iterative pruning
percentage"); the final ``test_acc`` and the **generalization gap** train_acc − test_acc.

Correlations (``stability_correlations.csv``): Pearson r with its two-sided p-value and
Kendall τ (τ-b, with its p-value) between mean stability and test accuracy, and between mean
stability and the gap, over the pruning runs (intervention ``prune``, scratch included), per
architecture (``model``) and per iterative rate (rounded to 4 decimals); and between every
flatness measure present (Section 3.4: Hessian trace, gradient-covariance trace, TIC proxy,
ε-flatness) and stability, test accuracy and gap. A group needs at least 3 runs with a
non-constant pair of columns; otherwise r and τ are NaN.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats

from analysis.figures import png_bytes
from analysis.sections import SectionInput, SectionOutput
from analysis.tables import to_csv_text, to_markdown

MIN_RUNS = 3
FLATNESS = ("hessian_trace", "gradient_covariance_trace", "tic_proxy", "eps_flatness")
RATE_DECIMALS = 4


def _settings(text: Any) -> Dict[str, Any]:
    if isinstance(text, dict):
        return text
    try:
        value = json.loads(text) if isinstance(text, str) else {}
    except ValueError:
        value = {}
    return value if isinstance(value, dict) else {}


def per_model(models: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """One row per completed prune_during_training trial: trial_id, model, target, intervention,
    noise_batches, scratch, iterative_rate, n_events, stability, test_acc, train_acc, gap."""
    rows: List[Dict[str, Any]] = []
    frame = models[(models.get("mode") == "prune_during_training")] if "mode" in models.columns else models
    if "status" in frame.columns:
        frame = frame[frame["status"] == "completed"]
    for trial_id, row in frame.iterrows():
        settings = _settings(row.get("mode_settings"))
        mine = events[events["trial_id"] == trial_id] if len(events) else events
        per_event = mine.groupby("event")["stability"].first() if len(mine) else pd.Series(dtype=float)
        scratch = bool(settings.get("scratch", False))
        stability = 1.0 if scratch else (float(per_event.mean()) if len(per_event) else float("nan"))
        rate = float(mine["rate"].max()) if len(mine) else float("nan")
        rows.append({
            "trial_id": trial_id,
            "model": row.get("model"),
            "seed": row.get("seed"),
            "target": "scratch" if scratch else settings.get("target", "S"),
            "intervention": settings.get("intervention", "prune"),
            "noise_batches": int(settings.get("noise_batches", 1)),
            "scratch": scratch,
            "iterative_rate": round(rate, RATE_DECIMALS) if np.isfinite(rate) else float("nan"),
            "n_events": int(len(per_event)),
            "stability": stability,
            "test_acc": float(row["test_acc"]),
            "train_acc": float(row["train_acc"]),
            "gap": float(row["train_acc"]) - float(row["test_acc"]),
        })
    return pd.DataFrame(rows).sort_values("trial_id").reset_index(drop=True) if rows else pd.DataFrame(
        columns=["trial_id", "model", "seed", "target", "intervention", "noise_batches", "scratch", "iterative_rate",
                 "n_events", "stability", "test_acc", "train_acc", "gap"])


def correlate(x: pd.Series, y: pd.Series) -> Dict[str, float]:
    """Pearson r, its p-value, Kendall τ-b and its p-value over the rows where both are finite."""
    both = pd.concat([x.astype(float), y.astype(float)], axis=1).dropna()
    both = both[np.isfinite(both).all(axis=1)]
    n = len(both)
    out = {"n": n, "pearson_r": float("nan"), "pearson_p": float("nan"),
           "kendall_tau": float("nan"), "kendall_p": float("nan")}
    if n < MIN_RUNS or both.iloc[:, 0].nunique() < 2 or both.iloc[:, 1].nunique() < 2:
        return out
    r, p = stats.pearsonr(both.iloc[:, 0], both.iloc[:, 1])
    tau, tau_p = stats.kendalltau(both.iloc[:, 0], both.iloc[:, 1])
    out.update(pearson_r=float(r), pearson_p=float(p), kendall_tau=float(tau), kendall_p=float(tau_p))
    return out


def correlations(table: pd.DataFrame, flatness: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``stability_correlations.csv`` (see the module docstring)."""
    rows: List[Dict[str, Any]] = []
    pruning = table[table["intervention"] == "prune"]
    groups = [("all", "all", pruning)]
    groups += [("model", str(k), g) for k, g in pruning.groupby("model", sort=True)]
    groups += [("iterative_rate", f"{k:g}", g) for k, g in pruning.dropna(subset=["iterative_rate"])
               .groupby("iterative_rate", sort=True)]
    for group, value, part in groups:
        for other in ("test_acc", "gap"):
            rows.append({"group": group, "value": value, "x": "stability", "y": other,
                         **correlate(part["stability"], part[other])})
    indexed = pruning.set_index("trial_id")
    for measure in flatness.columns:
        values = flatness[measure].reindex(indexed.index)
        for other in ("stability", "test_acc", "gap"):
            rows.append({"group": "all", "value": "all", "x": measure, "y": other,
                         **correlate(values, indexed[other])})
    return pd.DataFrame(rows)


def _colours(keys) -> Dict[Any, Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {key: cmap(i % 10) for i, key in enumerate(sorted(set(keys), key=str))}


def accuracy_during_training_figure(epochs: pd.DataFrame, events: pd.DataFrame, table: pd.DataFrame) -> Figure:
    """Figure 2 left: test accuracy by epoch, one line per run, the pruning events marked."""
    figure = Figure(figsize=(7, 4))
    ax = figure.add_subplot(1, 1, 1)
    colours = _colours(table["target"])
    labelled = set()
    for _, run in table.iterrows():
        curve = epochs[epochs["trial_id"] == run["trial_id"]].sort_values("epoch")
        if not len(curve):
            continue
        label = None if run["target"] in labelled else str(run["target"])
        labelled.add(run["target"])
        ax.plot(curve["epoch"], curve["test_acc"], color=colours[run["target"]], lw=0.8, alpha=0.7, label=label)
        marks = events[events["trial_id"] == run["trial_id"]].drop_duplicates("event") if len(events) else events
        for _, event in marks.iterrows():
            # An event after e epochs: before it the accuracy is the record of epoch e.
            ax.plot([event["epoch"], event["epoch"]], [event["t_pre"], event["t_post"]],
                    color=colours[run["target"]], lw=1.2)
            ax.scatter([event["epoch"]], [event["t_post"]], color=colours[run["target"]], marker="v", s=12)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy")
    ax.set_title("test accuracy during training; ▼ accuracy right after each pruning event")
    ax.legend(title="target", fontsize=7)
    return figure


def stability_accuracy_figure(table: pd.DataFrame) -> Figure:
    """Figure 2 right: mean stability against final test accuracy, one point per run,
    coloured by target, marker by iterative rate."""
    figure = Figure(figsize=(6, 4))
    ax = figure.add_subplot(1, 1, 1)
    colours = _colours(table["target"])
    markers = ["o", "s", "^", "D", "v", "P", "X", "*"]
    rates = sorted(table["iterative_rate"].dropna().unique())
    for (target, rate), part in table.groupby(["target", table["iterative_rate"].fillna(-1)], sort=True):
        marker = markers[rates.index(rate) % len(markers)] if rate in rates else "x"
        label = f"{target}, rate {rate:g}" if rate >= 0 else f"{target}"
        ax.scatter(part["stability"], part["test_acc"], color=colours[target], marker=marker, label=label, s=20)
    ax.set_xlabel("mean stability over pruning events")
    ax.set_ylabel("final test accuracy")
    ax.set_title("stability against test accuracy (one point per run)")
    ax.legend(fontsize=6)
    return figure


def rate_figure(table: pd.DataFrame) -> Figure:
    """Figure 3: iterative rate against mean stability and test accuracy, per target (means
    over seeds)."""
    figure = Figure(figsize=(9, 3.5))
    colours = _colours(table["target"])
    data = table.dropna(subset=["iterative_rate"])
    for column, name in enumerate(("stability", "test_acc")):
        ax = figure.add_subplot(1, 2, column + 1)
        for target, part in data.groupby("target", sort=True):
            means = part.groupby("iterative_rate")[name].mean()
            ax.plot(means.index, means.values, marker="o", color=colours[target], label=str(target))
        ax.set_xlabel("iterative pruning rate (fraction of the layer's filters per event)")
        ax.set_ylabel("mean stability" if name == "stability" else "final test accuracy")
        ax.legend(title="target", fontsize=7)
    figure.suptitle("iterative rate against stability and test accuracy")
    return figure


def noise_figure(table: pd.DataFrame) -> Figure:
    """Figure 5: final test accuracy of each noise-injection variant (and its number of
    batches) against pruning, mean and every run."""
    figure = Figure(figsize=(7, 3.5))
    ax = figure.add_subplot(1, 1, 1)
    labels = []
    for position, ((intervention, batches), part) in enumerate(
            table.groupby(["intervention", "noise_batches"], sort=True)):
        name = intervention if intervention == "prune" else f"{intervention} {batches}"
        labels.append(name)
        ax.scatter([position] * len(part), part["test_acc"], color="grey", s=10)
        ax.scatter([position], [part["test_acc"].mean()], color="black", marker="_", s=300)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=20, fontsize=7)
    ax.set_ylabel("final test accuracy")
    ax.set_title("noise injection instead of pruning")
    figure.tight_layout()
    return figure


def flatness_figure(table: pd.DataFrame, flatness: pd.DataFrame) -> Figure:
    """Figure 6: every flatness measure against mean stability, one panel each."""
    measures = list(flatness.columns)
    figure = Figure(figsize=(3.2 * max(len(measures), 1), 3.2))
    colours = _colours(table["target"])
    indexed = table.set_index("trial_id")
    for i, measure in enumerate(measures):
        ax = figure.add_subplot(1, max(len(measures), 1), i + 1)
        values = flatness[measure].reindex(indexed.index)
        for target, part in indexed.groupby("target", sort=True):
            ax.scatter(part["stability"], values.reindex(part.index), color=colours[target], s=14, label=str(target))
        ax.set_xlabel("mean stability")
        ax.set_ylabel(measure)
    if measures:
        figure.axes[0].legend(fontsize=6)
    figure.tight_layout()
    return figure


def stability_section(section: SectionInput) -> SectionOutput:
    """The section, registered as ``stability`` in :mod:`analysis.sections`."""
    notes: List[str] = []
    events = section.tables.get("events")
    if events is None:
        events = pd.DataFrame(columns=["trial_id", "event", "epoch", "stability", "rate", "t_pre", "t_post"])
        notes.append("stability: no events table (add events to the preset's analysis.tables)")
    table = per_model(section.models, events)
    lines = ["## Generalization-stability tradeoff (pruning during training)", ""]
    if not len(table):
        notes.append("stability: no completed prune_during_training trial")
        return SectionOutput(lines + ["No completed prune_during_training trial."], {}, notes)
    present = [m for m in FLATNESS if m in section.measures.columns]
    flatness = section.measures[present] if present else pd.DataFrame(index=section.measures.index)
    flatness = flatness.reindex(table["trial_id"])
    corr = correlations(table, flatness)
    files = {
        "stability_models.csv": to_csv_text(table).encode(),
        "stability_correlations.csv": to_csv_text(corr).encode(),
    }
    pruning = table[table["intervention"] == "prune"]
    epochs = section.tables.get("epochs", pd.DataFrame(columns=["trial_id", "epoch", "test_acc"]))
    figures = [
        ("figures/stability_accuracy_during_training.png", "test accuracy during training, pruning events marked "
         "(Figure 2 left)", accuracy_during_training_figure(epochs, events, pruning)),
        ("figures/stability_vs_test_accuracy.png", "mean stability against final test accuracy, by target and "
         "iterative rate (Figure 2 right)", stability_accuracy_figure(pruning)),
        ("figures/stability_iterative_rate.png", "iterative rate against stability and test accuracy per target "
         "(Figure 3)", rate_figure(pruning)),
    ]
    if table["intervention"].nunique() > 1:
        figures.append(("figures/stability_noise_injection.png", "noise-injection variants against pruning "
                        "(Figure 5)", noise_figure(table)))
    if present:
        figures.append(("figures/stability_flatness.png", "flatness against stability (Figure 6)",
                        flatness_figure(pruning, flatness)))
    else:
        notes.append("stability: no flatness measure in the store: no flatness figure")
    for relative, _, figure in figures:
        files[relative] = png_bytes(figure)
    shown = table.drop(columns=["train_acc"])
    lines += [f"{len(table)} runs; mean stability from the events table (`stability_models.csv`).", "",
              to_markdown(shown), "",
              "### Stability against generalization (`stability_correlations.csv`)", "",
              to_markdown(corr), ""]
    for relative, title, _ in figures:
        lines += [f"![{title}]({relative})", ""]
    return SectionOutput(lines, files, notes)

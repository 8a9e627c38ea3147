"""The ``stability`` section: the generalization-stability tradeoff of a pruning-during-training
zoo (Bartoldson et al. 2020, "The generalization-stability tradeoff in neural network
pruning", Sections 3.1-3.4, Figures 2, 3, 5 and 6; the authors' analysis is
``figures_and_tables/utils.py`` of bbartoldson/GeneralizationStabilityTradeoff).

Per run (``stability_models.csv``; from the trials rows, the ``events`` table the mode writes,
one row per (event, layer), and the per-epoch records):

- **mean stability**: the mean over the run's events that targeted at least one filter (one
  value per event: every layer of an event shares t_pre and t_post; stability = 1 − (t_pre −
  t_post)/t_pre, Section 2), as the authors average only the epochs that pruned something;
  1 for a run that never did (a ``scratch`` run, or a ``standard`` run: no pruning, target and
  intervention ``none``), as the authors give such runs 100%.
- **the generalization measure of the paper** (the section's default target):
  ``best_test_acc``, the best test accuracy at or after the last event that targeted a filter
  (the t_post of that event, then the record of every later epoch; every epoch without such
  an event), the authors' "Best Test Accuracy in Run"; ``best_gap``, train_acc − test_acc at
  that epoch (the train accuracy of the epoch before the event for t_post); ``best_epoch``, the
  epochs done there. The final model's ``test_acc`` and ``gap`` stay beside them.
- the **iterative rate**, the largest fraction of a layer's original filters targeted by one
  event (the paper's "maximum iterative pruning percentage"), and the number of events.

Correlations (``stability_correlations.csv``): Pearson r with its two-sided p-value and
Kendall τ (τ-b, with its p-value) between mean stability and each of ``best_test_acc``,
``best_gap`` (the paper's), ``test_acc`` and ``gap`` (the final model's), over the runs of
intervention ``prune`` and ``none`` (scratch and unpruned runs included: Figure 6's set,
group ``all``), over the runs with events and target S or L (Figure 2's correlation, group
``targets_S_L``), per architecture (``model``) and per iterative rate (rounded to 4
decimals); and between every flatness measure present (Section 3.4 and Appendix E: the top-k
eigenvalue sum, the paper's Tr(H), the Hessian trace estimate, the gradient-covariance trace,
the TIC proxy, ε-flatness) and stability, best_test_acc and best_gap over group ``all``. A group
needs at least 3 runs with a non-constant pair of columns; otherwise r and τ are NaN.
"""

from __future__ import annotations

import json
import math
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats

from analysis.figures import png_bytes
from analysis.section import SectionInput, SectionOutput
from analysis.tables import to_csv_text, to_markdown

MIN_RUNS = 3
FLATNESS = ("hessian_top_k_sum", "hessian_trace", "gradient_covariance_trace", "tic_proxy", "eps_flatness")
RATE_DECIMALS = 4
# The generalization columns: the paper's (best at or after the last pruning event) first.
TARGETS = ("best_test_acc", "best_gap", "test_acc", "gap")
COLUMNS = ["trial_id", "model", "seed", "target", "intervention", "noise_batches", "scratch", "iterative_rate",
           "n_events", "stability", "best_test_acc", "best_gap", "best_epoch", "test_acc", "train_acc", "gap"]


def _settings(text: Any) -> Dict[str, Any]:
    if isinstance(text, dict):
        return text
    try:
        value = json.loads(text) if isinstance(text, str) else {}
    except ValueError:
        value = {}
    return value if isinstance(value, dict) else {}


def pruned_events(events: pd.DataFrame) -> pd.DataFrame:
    """One row per event of one run's events table (``event``, ``epoch``, ``stability``),
    keeping the events that targeted at least one filter (every event when the table has no
    ``filters_targeted`` column)."""
    if not len(events):
        return pd.DataFrame(columns=["event", "epoch", "stability", "t_post"])
    per_event = events.groupby("event").agg(epoch=("epoch", "first"), stability=("stability", "first"),
                                            t_post=("t_post", "first"))
    if "filters_targeted" in events.columns:
        targeted = events.groupby("event")["filters_targeted"].sum()
        per_event = per_event[targeted.reindex(per_event.index) > 0]
    return per_event.reset_index()


def best_after_last_event(records: pd.DataFrame, pruned: pd.DataFrame) -> Tuple[float, float, float]:
    """(best test accuracy, train − test at that epoch, epochs done there) at or after the last
    event of ``pruned`` (:func:`pruned_events`), from a run's per-epoch ``records`` (``epoch``,
    ``train_acc``, ``test_acc``): the authors' ``summarize``, whose row of the last pruning epoch
    holds the accuracy right after the pruning (our event's t_post, beside the record of that
    epoch's train accuracy) and whose later rows are the later epochs. Ties go to the earliest
    epoch; NaN when there is no record."""
    records = records.dropna(subset=["test_acc"]).sort_values("epoch")
    if "train_acc" not in records.columns:
        records = records.assign(train_acc=math.nan)
    candidates: List[Tuple[float, float, float]] = []
    if len(pruned):
        last = pruned.sort_values("epoch").iloc[-1]
        at_event = records[records["epoch"] == last["epoch"]]
        train_acc = float(at_event["train_acc"].iloc[0]) if len(at_event) else math.nan
        candidates.append((float(last["t_post"]), train_acc, float(last["epoch"])))
        records = records[records["epoch"] > last["epoch"]]
    candidates += [(float(t), float(tr), float(e)) for t, tr, e in
                   zip(records["test_acc"], records["train_acc"], records["epoch"])]
    if not candidates:
        return math.nan, math.nan, math.nan
    best = max(range(len(candidates)), key=lambda i: (candidates[i][0], -i))
    test_acc, train_acc, epoch = candidates[best]
    return test_acc, train_acc - test_acc, epoch


def per_model(models: pd.DataFrame, events: pd.DataFrame, epochs: Optional[pd.DataFrame] = None) -> pd.DataFrame:
    """One row per completed prune_during_training or standard trial, with the columns
    :data:`COLUMNS` (module docstring). ``epochs`` (the per-epoch records) gives the paper's
    ``best_*`` columns; without it they are NaN."""
    rows: List[Dict[str, Any]] = []
    frame = models[models.get("mode").isin(["prune_during_training", "standard"])] \
        if "mode" in models.columns else models
    if "status" in frame.columns:
        frame = frame[frame["status"] == "completed"]
    for label, row in frame.iterrows():
        # events and epochs are per trial; the row's label names the model (the trial's id for its final model).
        trial_id = row.get("trial_id", label)
        standard = row.get("mode") == "standard"
        settings = {} if standard else _settings(row.get("mode_settings"))
        mine = events[events["trial_id"] == trial_id] if len(events) else events
        pruned = pruned_events(mine)
        scratch = bool(settings.get("scratch", False))
        stability = float(pruned["stability"].mean()) if len(pruned) else 1.0
        rate = float(mine["rate"].max()) if len(mine) else float("nan")
        records = epochs[epochs["trial_id"] == trial_id] if epochs is not None and len(epochs) else None
        best = best_after_last_event(records, pruned) if records is not None else (math.nan,) * 3
        rows.append({
            "trial_id": label,
            "model": row.get("model"),
            "seed": row.get("seed"),
            "target": "none" if standard else ("scratch" if scratch else settings.get("target", "S")),
            "intervention": "none" if standard else settings.get("intervention", "prune"),
            "noise_batches": 0 if standard else int(settings.get("noise_batches", 1)),
            "scratch": scratch,
            "iterative_rate": round(rate, RATE_DECIMALS) if np.isfinite(rate) else float("nan"),
            "n_events": int(mine["event"].nunique()) if len(mine) else 0,
            "stability": stability,
            "best_test_acc": best[0],
            "best_gap": best[1],
            "best_epoch": best[2],
            "test_acc": float(row["test_acc"]),
            "train_acc": float(row["train_acc"]),
            "gap": float(row["train_acc"]) - float(row["test_acc"]),
        })
    if not rows:
        return pd.DataFrame(columns=COLUMNS)
    return pd.DataFrame(rows, columns=COLUMNS).sort_values("trial_id").reset_index(drop=True)


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
    pruning = table[table["intervention"].isin(["prune", "none"])]
    figure2 = pruning[(pruning["n_events"] > 0) & pruning["target"].isin(["S", "L"])]
    groups = [("all", "all", pruning), ("targets_S_L", "S, L", figure2)]
    groups += [("model", str(k), g) for k, g in pruning.groupby("model", sort=True)]
    groups += [("iterative_rate", f"{k:g}", g) for k, g in pruning.dropna(subset=["iterative_rate"])
               .groupby("iterative_rate", sort=True)]
    for group, value, part in groups:
        for other in TARGETS:
            rows.append({"group": group, "value": value, "x": "stability", "y": other,
                         **correlate(part["stability"], part[other])})
    indexed = pruning.set_index("trial_id")
    for measure in flatness.columns:
        values = flatness[measure].reindex(indexed.index)
        for other in ("stability", "best_test_acc", "best_gap"):
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
    """Figure 2 right: mean stability against the best test accuracy at or after the last
    pruning event, one point per run, coloured by target, marker by iterative rate."""
    figure = Figure(figsize=(6, 4))
    ax = figure.add_subplot(1, 1, 1)
    colours = _colours(table["target"])
    markers = ["o", "s", "^", "D", "v", "P", "X", "*"]
    rates = sorted(table["iterative_rate"].dropna().unique())
    for (target, rate), part in table.groupby(["target", table["iterative_rate"].fillna(-1)], sort=True):
        marker = markers[rates.index(rate) % len(markers)] if rate in rates else "x"
        label = f"{target}, rate {rate:g}" if rate >= 0 else f"{target}"
        ax.scatter(part["stability"], part["best_test_acc"], color=colours[target], marker=marker, label=label, s=20)
    ax.set_xlabel("mean stability over pruning events")
    ax.set_ylabel("best test accuracy after the last event")
    ax.set_title("stability against test accuracy (one point per run)")
    ax.legend(fontsize=6)
    return figure


def rate_figure(table: pd.DataFrame) -> Figure:
    """Figure 3: iterative rate against mean stability and the best test accuracy after the
    last event, per target (means over seeds)."""
    # Constrained layout and short labels: the two panels' labels overlapped at 9 x 3.5 inches.
    figure = Figure(figsize=(10, 4), layout="constrained")
    colours = _colours(table["target"])
    data = table.dropna(subset=["iterative_rate"])
    for column, name in enumerate(("stability", "best_test_acc")):
        ax = figure.add_subplot(1, 2, column + 1)
        for target, part in data.groupby("target", sort=True):
            means = part.groupby("iterative_rate")[name].mean()
            ax.plot(means.index, means.values, marker="o", color=colours[target], label=str(target))
        ax.set_xlabel("filters pruned per event (fraction of the layer's)")
        ax.set_ylabel("mean stability" if name == "stability" else "best test accuracy after the last event")
        ax.legend(title="target", fontsize=7)
    figure.suptitle("iterative rate against stability and test accuracy")
    return figure


def noise_figure(table: pd.DataFrame) -> Figure:
    """Figure 5: the best test accuracy after the last event of each noise-injection variant
    (and its number of batches) against pruning, mean and every run."""
    figure = Figure(figsize=(7, 3.5))
    ax = figure.add_subplot(1, 1, 1)
    labels = []
    for position, ((intervention, batches), part) in enumerate(
            table.groupby(["intervention", "noise_batches"], sort=True)):
        name = intervention if intervention == "prune" else f"{intervention} {batches}"
        labels.append(name)
        ax.scatter([position] * len(part), part["best_test_acc"], color="grey", s=10)
        ax.scatter([position], [part["best_test_acc"].mean()], color="black", marker="_", s=300)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=20, fontsize=7)
    ax.set_ylabel("best test accuracy after the last event")
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
    epochs = section.tables.get("epochs")
    if epochs is None:
        epochs = pd.DataFrame(columns=["trial_id", "epoch", "train_acc", "test_acc"])
        notes.append("stability: no per-epoch records: best_test_acc and best_gap are NaN")
    table = per_model(section.models, events, epochs)
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
    pruning = table[table["intervention"].isin(["prune", "none"])]
    figures = [
        ("figures/stability_accuracy_during_training.png", "test accuracy during training, pruning events marked "
         "(Figure 2 left)", accuracy_during_training_figure(epochs, events, pruning)),
        ("figures/stability_vs_test_accuracy.png", "mean stability against the best test accuracy after the last "
         "pruning event, by target and iterative rate (Figure 2 right)", stability_accuracy_figure(pruning)),
        ("figures/stability_iterative_rate.png", "iterative rate against stability and the best test accuracy "
         "after the last pruning event, per target (Figure 3)", rate_figure(pruning)),
    ]
    if not table["intervention"].isin(["prune", "none"]).all():
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
    lines += [f"{len(table)} runs; mean stability over the events that targeted a filter, from the events table "
              "(`stability_models.csv`). Generalization as the paper measures it: `best_test_acc`, the best test "
              "accuracy at or after the last pruning event (the accuracy right after it, then every later epoch), "
              "and `best_gap`, train − test accuracy at that epoch (`best_epoch`); `test_acc` and `gap` are the "
              "final model's.", "",
              to_markdown(shown), "",
              "### Stability against generalization (`stability_correlations.csv`)", "",
              "Group `all`: pruning runs, scratch and unpruned included (Figure 6); `targets_S_L`: the runs "
              "with events and target S or L (Figure 2's correlation).", "",
              to_markdown(corr), ""]
    for relative, title, _ in figures:
        lines += [f"![{title}]({relative})", ""]
    return SectionOutput(lines, files, notes)

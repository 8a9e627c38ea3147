"""The stability section on hand-made rows: the mean stability per run (one value per event, not
per layer, over the events that targeted a filter), scratch and unpruned runs at 1, the
paper's generalization measure (the best test accuracy at or after the last pruning event, by
the authors' rule written here), the iterative rate, and r / τ against scipy on the same
numbers."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import sections
from analysis.section import SectionInput
from analysis.stability import per_model

TARGETS = ["S", "S", "L", "L", "R", "R"]


def _zoo():
    rng = np.random.default_rng(0)
    models, events, epochs = [], [], []
    for i, target in enumerate(TARGETS):
        trial = f"vgg11-{i:016x}"
        rate = 0.1 if i % 2 else 0.2
        settings = {"target": target, "rates": [rate], "event_epochs": [1, 2]}
        test_acc = 0.6 + 0.05 * i
        models.append({"trial_id": trial, "model": "vgg11", "seed": 0, "status": "completed",
                       "mode": "prune_during_training", "mode_settings": json.dumps(settings),
                       "train_acc": 0.95, "test_acc": test_acc})
        for event, epoch in enumerate((1, 2)):
            t_pre, t_post = 0.5, 0.5 - rng.uniform(0, 0.2)
            for layer in ("blocks.6.conv", "blocks.7.conv"):  # both layers share the event's numbers
                events.append({"trial_id": trial, "event": event, "epoch": epoch, "layer": layer,
                               "rate": rate if layer == "blocks.7.conv" else rate / 2, "filters_targeted": 2,
                               "t_pre": t_pre, "t_post": t_post,
                               "instability": (t_pre - t_post) / t_pre, "stability": 1 - (t_pre - t_post) / t_pre})
        for epoch in (1, 2, 3):
            epochs.append({"trial_id": trial, "epoch": epoch, "train_acc": 0.9,
                           "test_acc": test_acc - 0.1 * (3 - epoch) + (0.02 if epoch == 2 and i % 2 else 0.0)})
    models.append({"trial_id": "vgg11-scratch", "model": "vgg11", "seed": 0, "status": "completed",
                   "mode": "prune_during_training", "mode_settings": json.dumps({"scratch": True}),
                   "train_acc": 0.9, "test_acc": 0.55})
    for epoch, acc in ((1, 0.5), (2, 0.58), (3, 0.55)):
        epochs.append({"trial_id": "vgg11-scratch", "epoch": epoch, "train_acc": 0.9, "test_acc": acc})
    models = pd.DataFrame(models).set_index("trial_id", drop=False).rename_axis(None)
    return models, pd.DataFrame(events), pd.DataFrame(epochs)


def test_mean_stability_is_per_event_and_scratch_is_fully_stable():
    models, events, _ = _zoo()
    table = per_model(models, events).set_index("trial_id")
    for trial, part in events.groupby("trial_id"):
        by_event = part.drop_duplicates("event")
        assert table.loc[trial, "stability"] == pytest.approx(by_event["stability"].mean())
        assert table.loc[trial, "n_events"] == 2
        assert table.loc[trial, "iterative_rate"] == part["rate"].max()
    assert table.loc["vgg11-scratch", "stability"] == 1.0 and table.loc["vgg11-scratch", "target"] == "scratch"
    assert table.loc["vgg11-scratch", "gap"] == pytest.approx(0.35)


def _authors_best(records, events):
    """The authors' ``summarize`` (figures_and_tables/utils.py) on our tables: their log has
    one row per epoch whose test accuracy is read after that epoch's pruning step; the rows
    from the last epoch that pruned a filter on are "post_prune"; the best of them, and
    train − test on that row. Our record of epoch e is the accuracy before an event after e
    epochs, so their row e is our t_post when an event pruned there."""
    pruned = events[events["filters_targeted"] > 0].groupby("event").first() if len(events) else events
    log = {int(r["epoch"]): (float(r["test_acc"]), float(r["train_acc"])) for _, r in records.iterrows()}
    for _, event in pruned.iterrows():
        log[int(event["epoch"])] = (float(event["t_post"]), log[int(event["epoch"])][1])
    last = int(pruned["epoch"].max()) if len(pruned) else 0
    rows = [(epoch, acc, train) for epoch, (acc, train) in sorted(log.items()) if epoch >= last]
    epoch, acc, train = max(rows, key=lambda r: (r[1], -r[0]))
    return acc, train - acc, epoch


def test_the_generalization_target_is_the_best_accuracy_at_or_after_the_last_pruning_event():
    models, events, epochs = _zoo()
    table = per_model(models, events, pd.DataFrame(epochs)).set_index("trial_id")
    epochs = pd.DataFrame(epochs)
    for trial in models.index:
        acc, gap, epoch = _authors_best(epochs[epochs["trial_id"] == trial], events[events["trial_id"] == trial])
        assert table.loc[trial, "best_test_acc"] == pytest.approx(acc), trial
        assert table.loc[trial, "best_gap"] == pytest.approx(gap), trial
        assert table.loc[trial, "best_epoch"] == epoch, trial
        assert table.loc[trial, "test_acc"] == models.loc[trial, "test_acc"]  # the final model's, still there
    # The scratch run has no event: the best of every epoch (0.58 at epoch 2, not the final 0.55).
    assert table.loc["vgg11-scratch", "best_test_acc"] == pytest.approx(0.58)
    # A run whose best is the accuracy right after its last event, and one whose last event
    # removed nothing (the target starts at the event before it).
    records = pd.DataFrame([{"trial_id": "t", "epoch": e, "train_acc": 0.9, "test_acc": a}
                            for e, a in ((1, 0.5), (2, 0.9), (3, 0.6), (4, 0.7))])
    rows = pd.DataFrame([
        {"trial_id": "t", "event": 0, "epoch": 1, "layer": "c", "rate": 0.1, "filters_targeted": 1,
         "t_pre": 0.5, "t_post": 0.4, "stability": 0.8},
        {"trial_id": "t", "event": 1, "epoch": 2, "layer": "c", "rate": 0.1, "filters_targeted": 1,
         "t_pre": 0.9, "t_post": 0.85, "stability": 0.85 / 0.9},
        {"trial_id": "t", "event": 2, "epoch": 3, "layer": "c", "rate": 0.0, "filters_targeted": 0,
         "t_pre": 0.6, "t_post": 0.6, "stability": 1.0}])
    model = pd.DataFrame([{"model": "vgg11", "seed": 0, "status": "completed", "mode": "prune_during_training",
                           "mode_settings": "{}", "train_acc": 0.95, "test_acc": 0.7}], index=["t"])
    row = per_model(model, rows, records).iloc[0]
    assert (row["best_test_acc"], row["best_epoch"]) == (0.85, 2.0)  # t_post of event 1, not the 0.9 before it
    assert row["best_gap"] == pytest.approx(0.9 - 0.85)
    assert row["stability"] == pytest.approx((0.8 + 0.85 / 0.9) / 2)  # event 2 removed nothing
    assert row["n_events"] == 3


def test_unpruned_runs_are_fully_stable_with_the_best_accuracy_of_every_epoch():
    models = pd.DataFrame([{"model": "vgg11", "seed": 0, "status": "completed", "mode": "standard",
                            "mode_settings": "{}", "train_acc": 1.0, "test_acc": 0.8}], index=["base"])
    records = pd.DataFrame([{"trial_id": "base", "epoch": e, "train_acc": 1.0, "test_acc": a}
                            for e, a in ((1, 0.7), (2, 0.82), (3, 0.8))])
    row = per_model(models, pd.DataFrame(), records).iloc[0]
    assert (row["target"], row["intervention"], row["stability"]) == ("none", "none", 1.0)
    assert (row["best_test_acc"], row["best_epoch"]) == (0.82, 2.0)


def test_section_writes_tables_and_figures_whose_correlations_scipy_recomputes():
    models, events, epochs = _zoo()
    measures = pd.DataFrame({"hessian_trace": np.arange(len(models), dtype=float)[::-1]}, index=models.index)
    out = sections.get("stability").fn(SectionInput(models=models, measures=measures,
                                             tables={"events": events, "epochs": epochs}, hparams=[], target="gap"))
    for name in ("stability_models.csv", "stability_correlations.csv", "figures/stability_accuracy_during_training.png",
                 "figures/stability_vs_test_accuracy.png", "figures/stability_iterative_rate.png",
                 "figures/stability_flatness.png"):
        assert name in out.files and out.files[name], name
        if name.endswith(".png"):
            assert out.files[name].startswith(b"\x89PNG")
    assert any("stability_vs_test_accuracy.png" in line for line in out.markdown)
    from io import StringIO
    table = pd.read_csv(StringIO(out.files["stability_models.csv"].decode()))
    corr = pd.read_csv(StringIO(out.files["stability_correlations.csv"].decode()))
    for y in ("best_test_acc", "best_gap", "test_acc", "gap"):
        row = corr[(corr["group"] == "all") & (corr["x"] == "stability") & (corr["y"] == y)].iloc[0]
        if table[y].nunique() < 2:
            continue
        r, p = stats.pearsonr(table["stability"], table[y])
        tau, _ = stats.kendalltau(table["stability"], table[y])
        assert row["n"] == 7
        assert row["pearson_r"] == pytest.approx(r, rel=1e-8) and row["pearson_p"] == pytest.approx(p, rel=1e-7)
        assert row["kendall_tau"] == pytest.approx(tau, rel=1e-8)
    per_rate = corr[(corr["group"] == "iterative_rate") & (corr["y"] == "best_test_acc")]
    assert sorted(per_rate["value"]) == ["0.1", "0.2"] and set(per_rate["n"]) == {3}
    figure2 = corr[(corr["group"] == "targets_S_L") & (corr["y"] == "best_test_acc")].iloc[0]
    runs = table[table["target"].isin(["S", "L"])]
    assert figure2["n"] == 4
    assert figure2["pearson_r"] == pytest.approx(stats.pearsonr(runs["stability"], runs["best_test_acc"])[0], rel=1e-8)
    flat = corr[(corr["x"] == "hessian_trace") & (corr["y"] == "stability")].iloc[0]
    indexed = table.set_index("trial_id")
    r, _ = stats.pearsonr(measures["hessian_trace"].reindex(indexed.index), indexed["stability"])
    assert flat["pearson_r"] == pytest.approx(r, rel=1e-8)


def test_the_rate_figure_labels_do_not_overlap_and_stay_inside_the_figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from analysis.stability import rate_figure

    models, events, _ = _zoo()
    figure = rate_figure(per_model(pd.DataFrame(models), pd.DataFrame(events)))
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    renderer = canvas.get_renderer()
    left, right = (ax.get_tightbbox(renderer) for ax in figure.axes[:2])  # each panel with its labels
    assert left.x1 <= right.x0, "the panels' labels overlap"
    whole = figure.bbox
    for box in (left, right):
        assert whole.x0 <= box.x0 and box.x1 <= whole.x1 and whole.y0 <= box.y0 and box.y1 <= whole.y1

"""The stability section on hand-made rows: the mean stability per run (one value per event, not
per layer), scratch runs at 1, the iterative rate, and r / τ against scipy on the same numbers."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.sections import SECTIONS, SectionInput
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
                               "rate": rate if layer == "blocks.7.conv" else rate / 2,
                               "t_pre": t_pre, "t_post": t_post,
                               "instability": (t_pre - t_post) / t_pre, "stability": 1 - (t_pre - t_post) / t_pre})
        for epoch in (1, 2, 3):
            epochs.append({"trial_id": trial, "epoch": epoch, "test_acc": test_acc - 0.1 * (3 - epoch)})
    models.append({"trial_id": "vgg11-scratch", "model": "vgg11", "seed": 0, "status": "completed",
                   "mode": "prune_during_training", "mode_settings": json.dumps({"scratch": True}),
                   "train_acc": 0.9, "test_acc": 0.55})
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


def test_section_writes_tables_and_figures_whose_correlations_scipy_recomputes():
    models, events, epochs = _zoo()
    measures = pd.DataFrame({"hessian_trace": np.arange(len(models), dtype=float)[::-1]}, index=models.index)
    out = SECTIONS["stability"](SectionInput(models=models, measures=measures,
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
    for y in ("test_acc", "gap"):
        row = corr[(corr["group"] == "all") & (corr["x"] == "stability") & (corr["y"] == y)].iloc[0]
        r, p = stats.pearsonr(table["stability"], table[y])
        tau, _ = stats.kendalltau(table["stability"], table[y])
        assert row["n"] == 7
        assert row["pearson_r"] == pytest.approx(r, rel=1e-8) and row["pearson_p"] == pytest.approx(p, rel=1e-7)
        assert row["kendall_tau"] == pytest.approx(tau, rel=1e-8)
    per_rate = corr[(corr["group"] == "iterative_rate") & (corr["y"] == "test_acc")]
    assert sorted(per_rate["value"]) == ["0.1", "0.2"] and set(per_rate["n"]) == {3}
    flat = corr[(corr["x"] == "hessian_trace") & (corr["y"] == "stability")].iloc[0]
    indexed = table.set_index("trial_id")
    r, _ = stats.pearsonr(measures["hessian_trace"].reindex(indexed.index), indexed["stability"])
    assert flat["pearson_r"] == pytest.approx(r, rel=1e-8)

"""The stability_demo zoo end to end on a real local Ray (reduced for CI; the full preset is the
slow test): sweep run, the measures (flatness on the test split), analyze; the events table,
the stability-versus-generalization table and the figures exist, and Pearson r and Kendall τ
are recomputed with scipy from the stored rows."""

import json

import pandas as pd
import pytest
from scipy import stats

from sweep import config as sweep_config
from sweep import driver
from sweep.cli import main

SETTINGS = "layers: [last_conv:4], rates: [0.25], event_epochs: [3, 4]"
REDUCED = ["train.epochs=6", "train.train_size=256", "train.lr=0.003", "seeds=[0]",
           "measures.flatness={split: test, subset: 64, top_k: 2, hutchinson_samples: 2, batch_size: 64}",
           "variants=[{mode: prune_during_training, mode_settings: [{" + SETTINGS + ", target: S}, {" + SETTINGS + ", target: L}, {"
           + SETTINGS + ", target: R}, {" + SETTINGS + ", scratch: true}]}]"]


def _run_zoo(storage, overrides, measures):
    config = sweep_config.load("stability_demo", overrides)
    assert driver.run(config, storage=str(storage)) == {"completed": len(config.trials())}
    assert main(["measure", "stability_demo", "--storage", str(storage), "--measures", measures]) == 0
    assert main(["analyze", "stability_demo", "--storage", str(storage)]) == 0
    return storage / "stability_demo", config


def _check(root, config):
    analysis = root / "analysis"
    for name in ("stability_models.csv", "stability_correlations.csv", "report.md",
                 "figures/stability_accuracy_during_training.png", "figures/stability_vs_test_accuracy.png",
                 "figures/stability_iterative_rate.png", "figures/stability_flatness.png"):
        assert (analysis / name).exists(), name
    assert "## Generalization-stability tradeoff" in (analysis / "report.md").read_text()

    trials = pd.read_parquet(root / "trials.parquet")
    events = pd.read_parquet(root / "events")
    scratch = {t for t, s in zip(trials["trial_id"], trials["mode_settings"]) if json.loads(s).get("scratch")}
    assert set(events["trial_id"]) == set(trials["trial_id"]) - scratch
    assert {"epoch", "step", "layer", "filters_removed", "filters_remaining", "t_pre", "t_post",
            "instability"} <= set(events.columns)
    flatness = pd.read_parquet(root / "measures")
    flatness = flatness[flatness["family"] == "flatness"]
    assert flatness["settings"].map(lambda s: json.loads(s)["settings"]["split"]).eq("test").all()

    stability = events.drop_duplicates(["trial_id", "event"]).groupby("trial_id")["stability"].mean()
    runs = trials.set_index("trial_id")
    runs["stability"] = stability.reindex(runs.index)
    runs.loc[sorted(scratch), "stability"] = 1.0
    runs["gap"] = runs["train_acc"] - runs["test_acc"]
    corr = pd.read_csv(analysis / "stability_correlations.csv")
    for y in ("test_acc", "gap"):
        row = corr[(corr["group"] == "all") & (corr["x"] == "stability") & (corr["y"] == y)].iloc[0]
        assert row["n"] == len(runs)
        if runs["stability"].nunique() > 1 and runs[y].nunique() > 1:
            r, p = stats.pearsonr(runs["stability"], runs[y])
            tau, _ = stats.kendalltau(runs["stability"], runs[y])
            assert row["pearson_r"] == pytest.approx(r, rel=1e-6, abs=1e-9)
            assert row["pearson_p"] == pytest.approx(p, rel=1e-6, abs=1e-9)
            assert row["kendall_tau"] == pytest.approx(tau, rel=1e-6, abs=1e-9)
    return runs


def test_reduced_stability_demo_end_to_end(ray_address, tmp_path):
    root, config = _run_zoo(tmp_path, REDUCED, "flatness")
    runs = _check(root, config)
    assert len(runs) == 4


@pytest.mark.slow
def test_full_stability_demo_end_to_end(ray_address, tmp_path):
    root, config = _run_zoo(tmp_path, [], "flatness,norms,training")
    runs = _check(root, config)
    assert len(runs) == 14
    assert runs["stability"].max() - runs["stability"].min() > 0.1  # a visible spread


@pytest.mark.parametrize("preset,count", [("stability_vgg11", 30), ("stability_resnet18", 30), ("stability_sgd", 54),
                                          ("noise_injection_vgg11", 100), ("stability_demo", 14)])
def test_presets_plan_their_counts(preset, count, capsys):
    assert main(["sweep", "plan", preset]) == 0
    assert f"experiment {preset}: {count} trials" in capsys.readouterr().out
    trials = sweep_config.load(preset).trials()
    assert len({t.trial_id for t in trials}) == count


def test_paper_schedules_give_the_paper_iterative_rates():
    from trainers import train  # noqa: F401 (loads the mode registry before the mode module)
    from trainers.modes.prune_during_training import removed_after

    # The last conv layer has 512 filters in both; 7 events from epoch 6 (10) every 40 epochs.
    vgg = sweep_config.load("stability_vgg11").trials()[0].mode_settings
    assert vgg.layer_event_epochs(3) == (6, 46, 86, 126, 166, 206, 246)
    assert removed_after(vgg, 512, 7, 1, 3) == round((512 - 52) / 7) == 66  # 66/512 ≈ 13% per event
    resnet = sweep_config.load("stability_resnet18").trials()[0].mode_settings
    assert resnet.layer_event_epochs(3) == (10, 50, 90, 130, 170, 210, 250)
    assert removed_after(resnet, 512, 7, 1, 3) == round((512 - 26) / 7) == 69  # 69/512 ≈ 14% per event
    sgd = {t.mode_settings.event_epochs for t in sweep_config.load("stability_sgd").trials()}
    assert sgd == {(41, 71, 101), (41, 101)}
    noise = {(t.mode_settings.intervention, t.mode_settings.noise_batches)
             for t in sweep_config.load("noise_injection_vgg11").trials()}
    assert len(noise) == 10 and ("gaussian", 1105) in noise and ("prune", 1) in noise

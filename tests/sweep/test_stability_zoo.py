"""The stability_demo zoo end to end on a real local Ray (reduced for CI; the full preset is the
slow test): sweep run, the measures (flatness on the test split, pac_bayes), analyze; the events
table, the stability-versus-generalization table and the figures exist, no stored value or
report cell is infinite, and Pearson r and Kendall τ are recomputed with scipy from the stored
rows. The paper presets plan Figure 2's configurations, and every event of them removes the
number of filters of Appendix A's ceiling formula, computed here."""

import json
import math
import re

import pandas as pd
import pytest
from scipy import stats

from sweep import config as sweep_config
from sweep import driver
from sweep.cli import main

SETTINGS = "layers: [last_conv:4], rates: [0.25], event_epochs: [2, 3]"
REDUCED = ["train.epochs=6", "train.train_size=256", "train.lr=0.003", "seeds=[0]",
           "measures.flatness={split: test, subset: 64, top_k: 2, hutchinson_samples: 2, batch_size: 64, "
           "tic_trace: top_k, eps_split: test, eps_report: first_failing, eps_max: 0.4}",
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

    targeted = events.groupby(["trial_id", "event"])["filters_targeted"].sum()
    pruned = events.drop_duplicates(["trial_id", "event"]).set_index(["trial_id", "event"])
    pruned = pruned[targeted.reindex(pruned.index) > 0].reset_index()
    stability = pruned.groupby("trial_id")["stability"].mean()
    runs = trials.set_index("trial_id")
    runs["stability"] = stability.reindex(runs.index).fillna(1.0)
    runs["gap"] = runs["train_acc"] - runs["test_acc"]
    # The paper's generalization measure: the best test accuracy at or after the last event
    # that pruned (its t_post, then every later epoch's record); every epoch without one.
    records = pd.read_parquet(root / "epochs")
    last = pruned.groupby("trial_id")["epoch"].max()
    for trial in runs.index:
        mine = records[records["trial_id"] == trial]
        candidates = list(mine["test_acc"])
        if trial in last.index:
            after = pruned[(pruned["trial_id"] == trial) & (pruned["epoch"] == last[trial])]["t_post"]
            candidates = list(after) + list(mine[mine["epoch"] > last[trial]]["test_acc"])
        runs.loc[trial, "best_test_acc"] = max(candidates)
    table = pd.read_csv(analysis / "stability_models.csv").set_index("trial_id")
    assert table["best_test_acc"].reindex(runs.index).tolist() == pytest.approx(runs["best_test_acc"].tolist())
    corr = pd.read_csv(analysis / "stability_correlations.csv")
    for y in ("best_test_acc", "test_acc", "gap"):
        row = corr[(corr["group"] == "all") & (corr["x"] == "stability") & (corr["y"] == y)].iloc[0]
        assert row["n"] == len(runs)
        if runs["stability"].nunique() > 1 and runs[y].nunique() > 1:
            r, p = stats.pearsonr(runs["stability"], runs[y])
            tau, _ = stats.kendalltau(runs["stability"], runs[y])
            assert row["pearson_r"] == pytest.approx(r, rel=1e-6, abs=1e-9)
            assert row["pearson_p"] == pytest.approx(p, rel=1e-6, abs=1e-9)
            assert row["kendall_tau"] == pytest.approx(tau, rel=1e-6, abs=1e-9)
    return runs


def _no_infinite_value(root):
    measures = pd.read_parquet(root / "measures")
    assert not measures["value"].isin([math.inf, -math.inf]).any(), \
        measures[measures["value"].isin([math.inf, -math.inf])][["measure", "value"]]
    report = (root / "analysis" / "report.md").read_text()
    assert not re.findall(r"(?<![A-Za-z])-?inf(?![A-Za-z])", report, flags=re.IGNORECASE)
    for name in ("stability_models.csv", "stability_correlations.csv"):
        table = pd.read_csv(root / "analysis" / name)
        numbers = table.select_dtypes("number")
        assert not numbers.isin([math.inf, -math.inf]).any().any(), name


def test_reduced_stability_demo_end_to_end(ray_address, tmp_path):
    root, config = _run_zoo(tmp_path, REDUCED + ["measures.pac_bayes={draws: 2, subset_size: 128}"],
                            "flatness,pac_bayes")
    runs = _check(root, config)
    assert len(runs) == 4
    _no_infinite_value(root)


@pytest.mark.slow
def test_full_stability_demo_end_to_end(ray_address, tmp_path):
    root, config = _run_zoo(tmp_path, [], "flatness,norms,training,pac_bayes")
    runs = _check(root, config)
    assert len(runs) == 14
    assert runs["stability"].max() - runs["stability"].min() > 0.1  # a visible spread
    _no_infinite_value(root)


@pytest.mark.parametrize("preset,count", [("stability_vgg11", 60), ("stability_resnet18", 50), ("stability_sgd", 54),
                                          ("noise_injection_vgg11", 120), ("stability_demo", 14)])
def test_presets_plan_their_counts(preset, count, capsys):
    assert main(["sweep", "plan", preset]) == 0
    assert f"experiment {preset}: {count} trials" in capsys.readouterr().out
    trials = sweep_config.load(preset).trials()
    assert len({t.trial_id for t in trials}) == count


# Figure 2 of the paper (Appendix B.1, the authors' F2_VGG_* and F2_RN_* configurations):
# (period r, target or scratch) per point, s, e and p per architecture, 10 runs each.
FIGURE2 = {
    "stability_vgg11": {"score": "l2", "starts": (3, 4, 5, 6), "ends": (150, 150, 150, 275),
                        "fractions": (0.3, 0.3, 0.3, 0.9),
                        "points": {(4, "S"), (40, "S"), (40, "L"), (40, "R"), "scratch", "none"}},
    "stability_resnet18": {"score": "activation", "starts": (7, 8, 9, 10), "ends": (150, 150, 170, 275),
                           "fractions": (0.25, 0.4, 0.25, 0.95),
                           "points": {(4, "S"), (40, "S"), (40, "L"), "scratch", "none"}},
}


@pytest.mark.parametrize("preset", sorted(FIGURE2))
def test_figure2_presets_plan_the_papers_configurations(preset, capsys):
    paper = FIGURE2[preset]
    assert main(["sweep", "plan", preset]) == 0
    out = capsys.readouterr().out
    assert "mode=standard" in out and "'period': 4" in out and "'period': 40" in out and "'scratch': True" in out
    points = {}
    for trial in sweep_config.load(preset).trials():
        if trial.mode == "standard":
            point = "none"
        else:
            settings = trial.mode_settings
            assert (settings.start_epochs, settings.end_epochs, settings.fractions, settings.score) == \
                (paper["starts"], paper["ends"], paper["fractions"], paper["score"])
            assert settings.layers == ("last_conv:4",) and settings.count_rule == "ceil"
            assert settings.event_after == "epoch_index"
            point = "scratch" if settings.scratch else (settings.period, settings.target)
        points.setdefault(point, set()).add(trial.seed)
        assert trial.epochs == 325 and trial.lr_milestones == (150, 300) and trial.optimizer == "adam"
    assert set(points) == paper["points"]
    assert all(seeds == set(range(10)) for seeds in points.values())  # 10 runs of each


def _ceiling_counts(n, p, s, e, r):
    """Appendix A, written out: K = len(range(s, e + 1, r)) events; m = ⌈(1 − p)·n⌉ filters remain
    at the end and ⌈m + (n − m)(K − j)/K⌉ after event j; the event removes the difference."""
    events = list(range(s, e + 1, r))
    k = len(events)
    m = math.ceil(round((1 - p) * n, 9))
    remaining = [math.ceil(m + (n - m) * (k - j) / k) for j in range(k + 1)]
    # The authors' loop prunes after training epoch s (0-based): s + 1 epochs done.
    return {epoch + 1: remaining[j] - remaining[j + 1] for j, epoch in enumerate(events)}


@pytest.mark.parametrize("preset", sorted(FIGURE2))
def test_every_event_of_the_figure2_presets_removes_the_ceiling_formulas_filters(preset):
    from types import SimpleNamespace

    from trainers.train import build_model
    from trainers.modes.prune_during_training import PruneDuringTraining

    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    for trial in sweep_config.load(preset).trials():
        if trial.mode != "prune_during_training" or trial.mode_settings.scratch or trial.seed != 0:
            continue
        settings = trial.mode_settings
        model = build_model(trial, 10)
        mode = PruneDuringTraining(trial)
        state = SimpleNamespace(model=model, epoch=0, step=0, masks={}, evaluate=lambda m: {"test_acc": 1.0})
        if settings.score == "activation":  # scores as if trained: distinct activations per filter
            mode._setup(model)
            mode.activation = {name: torch.rand(512) for name in mode._layers}
        for epoch in range(1, 325):
            state.epoch = epoch
            mode.on_epoch_start(state)
        layers = sorted({row["layer"] for row in mode.events}, key=lambda name: list(dict(model.named_modules())).index(name))
        assert len(layers) == 4
        for i, layer in enumerate(layers):
            expected = _ceiling_counts(512, paper_fraction(preset, i), FIGURE2[preset]["starts"][i],
                                       FIGURE2[preset]["ends"][i], settings.period)
            got = {row["epoch"]: row["filters_targeted"] for row in mode.events if row["layer"] == layer}
            assert got == expected, (preset, settings.period, settings.target, layer)
            assert sum(got.values()) == 512 - math.ceil(round((1 - paper_fraction(preset, i)) * 512, 9))


def paper_fraction(preset, index):
    return FIGURE2[preset]["fractions"][index]


def test_the_noise_preset_runs_the_papers_variants():
    noise = {(t.mode, t.mode_settings.intervention if t.mode != "standard" else None,
              t.mode_settings.noise_batches if t.mode != "standard" else None)
             for t in sweep_config.load("noise_injection_vgg11").trials()}
    assert noise == {("standard", None, None), ("prune_during_training", "prune", 1)} | {
        ("prune_during_training", kind, n) for kind, ns in
        (("zero_return_zero", (1, 50, 1105)), ("gaussian", (1, 50, 1105)),
         ("zero_return_saved", (89, 630, 1220, 2480))) for n in ns}
    for trial in sweep_config.load("noise_injection_vgg11").trials():
        if trial.mode != "standard":
            assert trial.mode_settings.target == "L" and trial.mode_settings.period == 40
            assert trial.mode_settings.eval_noise_batches == 79  # the authors' test batches at batch 128


def test_the_sgd_preset_prunes_after_epochs_41_71_and_101():
    sgd = {t.mode_settings.all_event_epochs() for t in sweep_config.load("stability_sgd").trials()}
    assert sgd == {(41, 71, 101), (41, 101)}

"""The imp_demo zoo end to end on a real local Ray (reduced for CI; the full preset is the
slow test): sweep run, the measures that the imp section reads, analyze; the report's
tables recomputed from the stored rows."""

import numpy as np
import pandas as pd
import pytest

from sweep import config as sweep_config
from sweep import driver
from sweep import measure_job
from imp_reference import subgroup_differences
from sweep.cli import main

REDUCED = ["train.epochs=3", "train.train_size=300", "grid.label_noise=[0.3]", "checkpoint_epochs=[1]",
           "variants=[{mode: imp, mode_settings: {levels: 2, rewind_epoch: 0}}, "
           "{mode: extended_dense, mode_settings: {levels: 2, rewind_epoch: 0}}, "
           "{width: {scale_from: 300, factor: 0.8, steps: 2}}]"]


def _run_zoo(storage, overrides):
    config = sweep_config.load("imp_demo", overrides)
    counts = driver.run(config, storage=str(storage))
    assert counts == {"completed": len(config.trials())}
    assert measure_job.run("imp_demo", storage=str(storage), measures="el2n,training")["error"] == 0
    assert main(["analyze", "imp_demo", "--storage", str(storage)]) == 0
    return storage / "imp_demo"


def _check(root):
    analysis = root / "analysis"
    for name in ("imp_optimal.csv", "imp_summary.csv", "imp_el2n_groups.csv", "imp_vs_extended_dense.csv",
                 "imp_width_scaling.csv", "figures/imp_test_error.png", "figures/imp_el2n_groups.png",
                 "figures/imp_train_loss.png", "figures/imp_vs_extended_dense.png", "figures/imp_vs_width.png"):
        assert (analysis / name).exists(), name
    report = (analysis / "report.md").read_text()
    assert "## Iterative magnitude pruning" in report

    models = pd.read_parquet(root / "models")
    trials = pd.read_parquet(root / "trials.parquet")
    imp = models.merge(trials[["trial_id", "mode", "label_noise", "seed"]], on="trial_id")
    imp = imp[imp["mode"] == "imp"]
    optimal = pd.read_csv(analysis / "imp_optimal.csv")
    for (noise, seed), run in imp.groupby(["label_noise", "seed"]):
        run = run.sort_values("model_id")
        errors = 1 - run["test_acc"].to_numpy()
        row = optimal[(optimal.label_noise == noise) & (optimal.seed == seed)].iloc[0]
        assert row.optimal_level == int(np.argmin(errors))
        assert row.optimal_sparsity == pytest.approx(run["sparsity"].to_numpy()[np.argmin(errors)])

    el2n = pd.read_parquet(root / "el2n")
    groups = pd.read_csv(analysis / "imp_el2n_groups.csv")
    for noise in sorted(imp["label_noise"].unique()):
        per_seed = []
        for seed in sorted(imp["seed"].unique()):
            row = optimal[(optimal.label_noise == noise) & (optimal.seed == seed)].iloc[0]
            per_seed.append(subgroup_differences(el2n, row.trial, f"level_{int(row.optimal_level):02d}"))
        got = groups[(groups.label_noise == noise) & (groups.sparsity_of_interest == "optimal")].sort_values("group")
        np.testing.assert_allclose(got.loss_difference.to_numpy(), np.mean(per_seed, axis=0), rtol=1e-8)


def test_reduced_imp_demo_end_to_end(ray_address, tmp_path):
    _check(_run_zoo(tmp_path, REDUCED))


@pytest.mark.slow
def test_full_imp_demo_end_to_end(ray_address, tmp_path):
    _check(_run_zoo(tmp_path, []))

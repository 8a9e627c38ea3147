"""The ``imp`` report section on a synthetic IMP zoo, each number recomputed independently."""

import io

import numpy as np
import pandas as pd
import pytest

from analysis.data import index_by_model
from analysis.imp import imp_section, match_rule
from analysis import sections
from analysis.section import SectionInput
from imp_reference import subgroup_differences

LEVELS, SEEDS, NOISES, EXAMPLES = 5, (0, 1, 2), (0.0, 0.3), 100


@pytest.fixture(scope="module")
def zoo():
    rng = np.random.default_rng(0)
    rows, el2n = [], []
    for noise in NOISES:
        for seed in SEEDS:
            for mode in ("imp", "extended_dense"):
                trial = f"nin-{mode}-{noise}-{seed}"
                scores = rng.random(EXAMPLES)
                noisy = rng.random(EXAMPLES) < noise
                for level in range(LEVELS):
                    sparsity = 1 - 0.8 ** level if mode == "imp" else 0.0
                    error = 0.3 + noise * 0.2 - 0.05 * np.sin(level) * (1 + noise) + rng.normal(0, 0.01)
                    model_id = f"level_{level:02d}"
                    rows.append({"trial_id": trial, "model_id": model_id, "mode": mode, "model": "nin",
                                 "dataset": "digits", "label_noise": noise, "seed": seed, "sparsity": sparsity,
                                 "weights": 1000, "model_epoch": 3 + 2 * level, "train_loss": 0.1,
                                 "test_acc": 1 - error, "status": "completed"})
                    losses = rng.random(EXAMPLES) + level * 0.1 * noisy
                    el2n += [{"trial_id": trial, "model_id": model_id, "index": i, "score": scores[i],
                              "noisy": bool(noisy[i]), "loss": losses[i]} for i in range(EXAMPLES)]
    models = index_by_model(pd.DataFrame(rows))
    tables = {"el2n": pd.DataFrame(el2n)}
    return models, tables, imp_section(SectionInput(models=models, measures=pd.DataFrame(index=models.index),
                                                    tables=tables, hparams=["label_noise"], target="gap"))


def _csv(output, name):
    return pd.read_csv(io.BytesIO(output.files[name]))


def test_the_section_is_registered_and_writes_its_tables_and_figures(zoo):
    _, _, output = zoo
    assert sections.get("imp").fn is imp_section
    assert {"imp_optimal.csv", "imp_summary.csv", "imp_el2n_groups.csv", "imp_vs_extended_dense.csv",
            "figures/imp_test_error.png", "figures/imp_train_loss.png", "figures/imp_el2n_groups.png",
            "figures/imp_vs_extended_dense.png"} <= set(output.files)
    assert output.markdown[0].startswith("## Iterative magnitude pruning")


def test_optimal_sparsities_equal_an_independent_scan(zoo):
    models, _, output = zoo
    optimal = _csv(output, "imp_optimal.csv")
    imp = models[models["mode"] == "imp"]
    for (noise, seed), run in imp.groupby(["label_noise", "seed"]):
        errors = [1 - float(run[run.model_id == f"level_{k:02d}"].test_acc.iloc[0]) for k in range(LEVELS)]
        best = int(np.argmin(errors))
        better = [k for k in range(1, LEVELS) if errors[k] < errors[0]]
        row = optimal[(optimal.label_noise == noise) & (optimal.seed == seed)].iloc[0]
        assert row.optimal_level == best and row.optimal_sparsity == pytest.approx(1 - 0.8 ** best)
        assert row.dense_error == pytest.approx(errors[0])
        if better:
            assert row.highest_better_level == max(better)
        else:
            assert pd.isna(row.highest_better_level)


def test_el2n_subgroup_differences_equal_an_independent_computation(zoo):
    _, tables, output = zoo
    optimal = _csv(output, "imp_optimal.csv")
    groups = _csv(output, "imp_el2n_groups.csv")
    el2n = tables["el2n"]
    for noise in NOISES:
        per_seed = []
        for seed in SEEDS:
            run = optimal[(optimal.label_noise == noise) & (optimal.seed == seed)].iloc[0]
            per_seed.append(subgroup_differences(el2n, run.trial, f"level_{int(run.optimal_level):02d}"))
        expected = np.mean(per_seed, axis=0)
        got = groups[(groups.label_noise == noise) & (groups.sparsity_of_interest == "optimal")].sort_values("group")
        np.testing.assert_allclose(got.loss_difference.to_numpy(), expected, rtol=1e-8)  # CSV keeps 10 digits


def test_the_match_rule_follows_the_paper():
    assert match_rule(pd.Series([-0.1, -0.12, -0.09])) == "lower"
    assert match_rule(pd.Series([-0.1, 0.12, 0.01])) == "match"
    assert match_rule(pd.Series([0.2, 0.25, 0.22])) == "higher"
    assert match_rule(pd.Series([0.2])) == "n/a"


def test_extended_dense_is_compared_level_by_level(zoo):
    _, _, output = zoo
    comparison = _csv(output, "imp_vs_extended_dense.csv")
    assert sorted(comparison.level.unique()) == list(range(LEVELS))
    assert set(comparison.imp_vs_extended_dense) <= {"lower", "higher", "match"}

"""The demo demonstrates: its zoo's generalization gap spreads well beyond one model's
test-set noise, and its models fit their training data."""

import argparse

import numpy as np
import pandas as pd
import pytest

from analysis.checks import FIT_ACCURACY, SPREAD_FACTOR, binomial_se
from sweep import config as sweep_config
from sweep.analyze import TEST_EXAMPLES

# The acceptance rule of the demo: the gap spans at least 10 percentage points.
MIN_GAP_RANGE = 0.10


def _spread_rule(train_acc: np.ndarray, test_acc: np.ndarray) -> None:
    gap = train_acc - test_acc
    assert gap.max() - gap.min() >= MIN_GAP_RANGE, gap
    # The report's spread rule (analysis.checks.target_noise_warnings: twice one model's
    # test-set standard error) must stay silent.
    assert gap.std(ddof=1) > SPREAD_FACTOR * binomial_se(float(test_acc.mean()), TEST_EXAMPLES["digits"])
    assert np.median(train_acc) >= FIT_ACCURACY, train_acc


def test_reduced_demo_spreads_the_gap_beyond_test_noise_and_fits(one_thread):
    """The demo's training recipe at its smallest architecture and each training-set size,
    trained without Ray (about 20 s on one core)."""
    from trainers.train import train

    config = sweep_config.load("demo", ["grid.width=[16]", "grid.depth=[2]"])
    assert [name for name, values in config.axes if len(values) > 1] == ["train_size"]
    results = [train(trial).final for trial in config.trials()]
    assert len(results) >= 3
    _spread_rule(np.array([r["train_acc"] for r in results]), np.array([r["test_acc"] for r in results]))


@pytest.mark.slow
def test_reduced_demo_end_to_end_prints_stage_times_and_passes_the_spread_rule(tmp_path, capsys):
    """``genzoo demo`` on one architecture per training-set size: sweep, measures, analysis."""
    from sweep.cli import _demo

    overrides = ["experiment=demo_reduced", "grid.width=[16]", "grid.depth=[2]"]
    assert _demo(argparse.Namespace(storage=str(tmp_path), data_root=None, overrides=overrides)) == 0
    out = capsys.readouterr().out
    assert "stage times: sweep" in out and "total" in out
    trials = pd.read_parquet(tmp_path / "demo_reduced" / "trials.parquet")
    _spread_rule(trials["train_acc"].to_numpy(float), trials["test_acc"].to_numpy(float))
    report = (tmp_path / "demo_reduced" / "analysis" / "report.md").read_text()
    assert "target spread below" not in report
    assert "## Against the paper" in report

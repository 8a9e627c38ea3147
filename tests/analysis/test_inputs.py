import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.data import completed_trials, grid_axes, measures_wide, target_values
from analysis.errors import AnalysisError

ROOT = Path(__file__).resolve().parents[2]

TRIALS = pd.DataFrame({
    "trial_id": ["c", "a", "b", "d"],
    "status": ["completed", "completed", "completed", "error"],
    "width": [8, 16, 8, 16],
    "depth": [2, 2, 2, 3],
    "dropout": [0.0, 0.5, 0.5, 0.0],
    "seed": [0, 1, 0, 0],
    "lr_milestones": [[8], [8], [8], [8]],
    "train_seconds": [1.0, 2.0, 3.0, 4.0],
    "train_acc": [1.0, 0.9, 0.8, np.nan],
    "test_acc": [0.7, 0.6, 0.75, np.nan],
    "train_loss": [0.1, 0.2, 0.3, np.nan],
    "test_loss": [1.0, 1.2, 0.9, np.nan],
})


def test_targets_follow_the_design_conventions():
    done = completed_trials(TRIALS)
    assert list(done.index) == ["a", "b", "c"]
    np.testing.assert_allclose(target_values(done, "gap").to_numpy(), [0.3, 0.05, 0.3])
    np.testing.assert_allclose(target_values(done, "test_error").to_numpy(), [0.4, 0.25, 0.3])
    np.testing.assert_allclose(target_values(done, "test_loss").to_numpy(), [1.2, 0.9, 1.0])
    with pytest.raises(AnalysisError, match="allowed: gap, test_loss, test_error"):
        target_values(done, "loss")


def test_axes_are_the_given_hyperparameters_that_vary_without_seed():
    axes, hold_fixed, notes = grid_axes(completed_trials(TRIALS), hparams=["width", "depth", "dropout", "seed",
                                                                           "lr_milestones"])
    # depth is constant among the completed trials; seed varies but is held fixed instead.
    assert axes == ["width", "dropout"]
    assert hold_fixed == ["seed"]
    assert any("lr_milestones" in note for note in notes)
    axes, _, notes = grid_axes(completed_trials(TRIALS), hparams=["depth", "width", "seed"])
    assert axes == ["width"]
    assert any("depth" in note for note in notes)


def test_measures_wide_keeps_ok_finite_values_of_completed_trials_only():
    measures = pd.DataFrame({
        "trial_id": ["a", "a", "b", "b", "c", "d"],
        "measure": ["m", "m", "m", "n", "n", "m"],
        "value": [1.0, 2.0, np.inf, 5.0, 6.0, 7.0],
        "status": ["ok", "ok", "ok", "error", "ok", "ok"],
    })
    wide = measures_wide(measures, ["a", "b", "c"])
    assert list(wide.columns) == ["m", "n"]
    assert wide.loc["a", "m"] == 2.0  # a stored duplicate keeps its last row
    assert np.isnan(wide.loc["b", "m"]) and np.isnan(wide.loc["b", "n"])
    assert wide.loc["c", "n"] == 6.0


def test_importing_analysis_imports_neither_torch_nor_ray():
    code = "import sys, analysis; print('torch' in sys.modules or 'ray' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                            env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert output.stdout.strip() == "False"

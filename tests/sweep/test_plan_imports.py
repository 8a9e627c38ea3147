"""`genzoo sweep plan` stays quick: a sweep file without an analysis target does not import
the analysis package (scikit-learn, about a second)."""

import subprocess
import sys


def test_plan_without_an_analysis_target_does_not_import_scikit_learn(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("experiment: s\ntrain: {epochs: 2}\ngrid: {width: [8, 16]}\n")
    code = (f"import sys; from sweep.cli import main; assert main(['sweep', 'plan', {str(path)!r}]) == 0; "
            "assert 'sklearn' not in sys.modules and 'analysis' not in sys.modules, 'imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "experiment s: 2 trials" in done.stdout


def test_plan_of_every_preset_imports_no_torch():
    # The presets hold measures blocks, modes, variants and width series: all are checked
    # against torch-free registries (measures/registry.py, trainers/catalog.py, mode settings).
    # Only a width series imports torch, to count each width's weights for the plan.
    code = ("import sys; from sweep import config; from sweep.cli import main\n"
            "for name in config.presets():\n"
            "    if 'variants' in config.load(name).to_dict(): continue\n"
            "    assert main(['sweep', 'plan', name]) == 0, name\n"
            "    assert 'torch' not in sys.modules, name\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr

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

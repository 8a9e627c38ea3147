"""A zoo made of extensions only, end to end: a model, a dataset, a training mode, a measure
family and a report section, each one module file with its spec line (the toys of
tests/trainers, tests/measures and tests/analysis), listed under ``extensions:`` in a sweep file
and nothing else changed. `genzoo sweep plan` validates with them, `sweep run` trains on Ray
(the trials import them in their workers), `measure` computes and stores the family and its
long table, `analyze` reports the section (issue 25)."""

import os
import subprocess
import sys
import textwrap

import pytest
import yaml

from sweep.store import Store

TOYS = {
    "toy_model": "tests/trainers/test_extensions.py:TOY_MODEL",
    "toy_dataset": "tests/trainers/test_extensions.py:TOY_DATASET",
    "toy_mode": "tests/trainers/test_extensions.py:TOY_MODE",
    "toy_measure_extension": "tests/measures/test_extension.py:SOURCE",
    "toy_section_extension": "tests/analysis/test_extension.py:SOURCE",
}
SWEEP = {
    "experiment": "toys", "dataset": "gray_digits", "model": "toy_mlp", "mode": "snapshots",
    "mode_settings": {"every": 1},
    "train": {"epochs": 2, "lr": 0.05, "train_size": 40, "batch_size": 20, "augment": False},
    "grid": {"width": [4, 6]}, "seeds": [0], "resources": {"cpus": 1},
    "extensions": list(TOYS),
    "measures": {"families": ["toy_weight_norm", "norms"], "toy_weight_norm": {"norm": "l1"}},
    "analysis": {"sections": ["toy"], "tables": ["toy_layers"]},
}


@pytest.fixture
def folder(tmp_path):
    """The folder genzoo runs from: the five toy modules, the sweep file."""
    import importlib.util
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    for module, where in TOYS.items():
        path, name = where.split(":")
        spec = importlib.util.spec_from_file_location(f"_toys_{module}", repo / path)
        source_module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(source_module)
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(getattr(source_module, name)))
    (tmp_path / "toys.yaml").write_text(yaml.safe_dump(SWEEP))
    return tmp_path


def _genzoo(folder, *args):
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "GENZOO_LOG": str(folder / "ray.log")}
    return subprocess.run([sys.executable, "-m", "sweep.cli", *args], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow  # 15 to 50 s: the full suite stays under 10 minutes on 2 idle cores
def test_a_zoo_of_extensions_is_planned_trained_measured_and_reported(folder, ray_address):
    storage = str(folder / "store")
    plan = _genzoo(folder, "sweep", "plan", "toys.yaml")
    assert plan.returncode == 0, plan.stderr
    assert "experiment toys: 2 trials" in plan.stdout

    bad = _genzoo(folder, "sweep", "plan", "toys.yaml", "mode_settings.every=0")
    assert bad.returncode == 2 and bad.stderr.strip() == \
        "genzoo: error: train.mode_settings.every: got 0, allowed: an integer >= 1"
    bad = _genzoo(folder, "sweep", "plan", "toys.yaml", "measures.toy_weight_norm.norm=linf")
    assert bad.returncode == 2 and "measures.toy_weight_norm.norm: got 'linf', allowed: l1, l2" in bad.stderr

    run = _genzoo(folder, "sweep", "run", "toys.yaml", "--storage", storage, "--address", ray_address)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    store = Store(storage, "toys")
    models = store.models()
    assert sorted(models["model_id"]) == ["epoch_01", "epoch_01", "epoch_02", "epoch_02", "final", "final"]

    measure = _genzoo(folder, "measure", "toys", "--storage", storage, "--address", ray_address)
    assert measure.returncode == 0, measure.stdout[-2000:] + measure.stderr[-2000:]
    rows = store.measures()
    assert set(rows["family"]) == {"toy_weight_norm", "norms"} and set(rows["status"]) == {"ok"}
    assert rows[rows["measure"] == "toy_norm"].merge(models, on=["trial_id", "model_id"]).shape[0] == len(models)
    layers = store.read_folder("toy_layers")
    assert {"trial_id", "model_id", "layer", "norm"} <= set(layers.columns)

    analyze = _genzoo(folder, "analyze", "toys", "--storage", storage)
    assert analyze.returncode == 0, analyze.stdout[-2000:] + analyze.stderr[-2000:]
    report_path = analyze.stdout.strip().splitlines()[-1].split("report: ", 1)[1]
    report = open(report_path).read()
    assert "## Toy section" in report and "| width | models |" in report

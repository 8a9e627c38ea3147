"""bench/measure_seconds.py with a tiny model and lowered settings (seconds on one core)."""

import json
import re

import pytest

from measures import registry
from measures.common import weight_parameters
from trainers.train import build_model

SCRIPT = "measure_seconds"
TINY = ["--width", "4", "--depth", "1", "--train-size", "64", "--epochs", "2", "--runs", "2"]
# The registry's defaults would take minutes on the CPU; these keep every family to a second.
LOWERED = ["--set", "flatness.subset=32", "--set", "flatness.top_k=3", "--set", "flatness.hutchinson_samples=4",
           "--set", "pac_bayes.draws=2", "--set", "pac_bayes.steps=4",
           "--set", "pruning_vs_perturbation.fractions=[1.0, 0.5, 0.0]"]
ROW = re.compile(r"^\| (\S+) \| ([\d.]+) \| ([\d.]+) \| .*\|$", re.M)


pytestmark = pytest.mark.usefixtures("one_thread")


def test_main_times_every_family_and_prints_seconds_and_ratio_to_the_baseline(bench, capsys, tmp_path):
    out_json = tmp_path / "seconds.json"
    assert bench.main(TINY + LOWERED + ["--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    rows = {name: (float(seconds), float(ratio)) for name, seconds, ratio in ROW.findall(out)}
    assert set(rows) == set(registry.names())
    baseline = float(re.search(r"^baseline: one train-loss evaluation over 64 images = ([\d.]+) s", out, re.M)[1])
    total = re.search(r"^\| \*\*all (\d+) families\*\* \| \*\*([\d.]+)\*\* \|", out, re.M)
    assert int(total[1]) == len(registry.names())

    saved = json.loads(out_json.read_text())
    seconds = {item["family"]: item["seconds"] for item in saved["families"]}
    assert all(item["error"] is None for item in saved["families"])
    assert min(saved["baseline_seconds"]) == pytest.approx(baseline, abs=5e-4)
    for name, (printed, ratio) in rows.items():
        assert printed == pytest.approx(seconds[name], abs=5e-3)
        assert ratio == pytest.approx(seconds[name] / min(saved["baseline_seconds"]), rel=0.01, abs=0.05)
    assert float(total[2]) == pytest.approx(sum(seconds.values()), abs=5e-3)
    assert saved["settings"]["overrides"][0] == ["flatness", "subset", 32]


def test_families_see_the_trained_model_and_data_the_job_would(bench):
    settings = bench.Settings(width=4, depth=1, train_size=48, epochs=2, runs=1,
                              families=("training", "norms", "el2n"))
    result = bench.run_benchmark(settings)
    values = {t.family: t.values for t in result.timings}
    assert result.train_images == 48
    # The training family's final train loss is the baseline's own evaluation of the model.
    assert values["training"]["train_loss"] == pytest.approx(result.train_loss, rel=1e-6)
    model = build_model(settings.train_config(), 10)
    assert values["norms"]["parameter_count"] == sum(p.numel() for p in model.parameters())
    assert values["norms"]["distance_from_init"] > 0  # the initial weights were loaded, not the final ones
    assert 0 < values["el2n"]["el2n"] < 2 ** 0.5
    assert len(weight_parameters(model)) == 4  # conv stem, one block's conv, two 1x1 convs


def test_a_failing_family_is_reported_and_the_others_still_run(bench, capsys, monkeypatch):
    # Settings out of range are refused before anything runs; a family can still fail on a model.
    from measures import flatness

    def fails(ctx, **settings):
        raise flatness.FlatnessError("top_k: the Hessian of this model has fewer eigenvalues")

    monkeypatch.setattr(flatness, "flatness", fails)
    argv = TINY + ["--measures", "norms,flatness,training", "--set", "flatness.subset=32"]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    assert re.search(r"^\| flatness \| error \| \| \w+Error: .*top_k.*\|$", out, re.M), out
    assert {name for name, _, _ in ROW.findall(out)} == {"norms", "training"}
    assert "failed: flatness" in out


@pytest.mark.parametrize("argv, message", [
    (["--runs", "0"], "--runs: got 0, allowed: an integer >= 1"),
    (["--lr", "0"], "--lr: got 0.0, allowed: a number > 0"),
    (["--measures", "norms,nope"], "--measures: unknown family 'nope', allowed: prunability,"),
    (["--set", "flatness"], "--set: got 'flatness', allowed: FAMILY.SETTING=VALUE, e.g. flatness.top_k=20"),
    (["--set", "norms.nope=1"], "measures.norms.nope: unknown setting, allowed: parameter_count_of"),
    (["--measures", "norms", "--set", "flatness.top_k=2"], "--set flatness.*: family not timed, timed: norms"),
])
def test_bad_argument_is_a_one_line_error_before_any_training(bench, capsys, argv, message):
    assert bench.main(TINY + argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing trained or printed before the error
    assert captured.err.startswith(f"measure_seconds: error: {message}")
    assert captured.err.count("\n") == 1


def test_cuda_without_a_gpu_is_a_one_line_error(bench, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert bench.main(TINY + ["--device", "cuda"]) == 2
    assert capsys.readouterr().err == ("measure_seconds: error: --device: got cuda, but torch sees no CUDA device; "
                                       "allowed here: cpu\n")


def test_compare_times_a_family_again_with_other_settings_in_the_same_process(bench, capsys, tmp_path):
    out_json = tmp_path / "seconds.json"
    compare = ["--compare", "flatness.trace_method=hutchinson", "--compare", "flatness.hutchinson_samples=8"]
    flatness_only = [arg for pair in zip(LOWERED[::2], LOWERED[1::2]) if pair[1].startswith("flatness.") for arg in pair]
    assert bench.main(TINY + flatness_only + ["--measures", "flatness,norms", "--json", str(out_json)] + compare) == 0
    out = capsys.readouterr().out
    saved = json.loads(out_json.read_text())
    (compared,) = saved["compared"]
    assert compared["family"] == "flatness" and compared["error"] is None
    # The --set values stay and the --compare values replace them.
    assert compared["settings"]["trace_method"] == "hutchinson" and compared["settings"]["hutchinson_samples"] == 8
    assert compared["settings"]["top_k"] == 3
    timed = {item["family"]: item for item in saved["families"]}
    # Only the trace (and tic_proxy, which divides by it) moves with the trace estimator.
    for name in ("hessian_top_eigenvalue", "hessian_top_k_sum", "effective_dimensionality", "eps_flatness"):
        assert compared["values"][name] == pytest.approx(timed["flatness"]["values"][name], rel=1e-6)
    row = re.search(r"^\| flatness \| ([\d.]+) \| ([\d.]+) \| ([\d.]+)× \|", out, re.M)
    assert row  # the ratio of the unrounded seconds, printed to 2 decimals
    assert float(row[3]) == pytest.approx(compared["seconds"] / timed["flatness"]["seconds"], abs=0.006)
    total = re.search(r"^\| \*\*all 2 families\*\* \| \*\*([\d.]+)\*\* \| \*\*([\d.]+)\*\* \| \*\*([\d.]+)×\*\* \|",
                      out, re.M)
    assert total
    norms = timed["norms"]["seconds"]
    assert float(total[1]) == pytest.approx(compared["seconds"] + norms, abs=0.01)
    assert float(total[2]) == pytest.approx(timed["flatness"]["seconds"] + norms, abs=0.01)


def test_compare_of_a_family_not_timed_is_a_one_line_error(bench, capsys):
    assert bench.main(TINY + ["--measures", "norms", "--compare", "flatness.top_k=3"]) == 2
    assert capsys.readouterr().err.strip() == (
        "measure_seconds: error: --compare flatness.*: family not timed, timed: norms")

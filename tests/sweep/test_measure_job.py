"""The measures job on a real local Ray over a small swept experiment, and `genzoo analyze`."""

import shutil

import pandas as pd
import pytest
import yaml

from measures import registry
from sweep import measure_job as job
from sweep import config as sweep_config
from sweep import driver
from sweep.cli import main
from sweep.store import Store

CHEAP = {
    "prunability": {"resolution": 0.05},
    "random_prunability": {"resolution": 0.05},
    "pac_bayes": {"draws": 2, "steps": 4, "subset_size": 96},
    "flatness": {"subset": 64, "top_k": 3, "hutchinson_samples": 4, "batch_size": 64},
    "margins": {"num_examples": 96},
    "output_margin_stats": {"num_examples": 96},
    "pruning_vs_perturbation": {"fractions": [1.0, 0.5, 0.0]},
}
SWEEP = {
    "experiment": "zoo", "dataset": "digits", "model": "nin",
    "train": {"epochs": 2, "lr": 0.05, "train_size": 96, "batch_size": 32, "depth": 2, "width": 8},
    "grid": {"dropout": [0.0, 0.5], "weight_decay": [0.0, 0.001]}, "seeds": [0],
    "checkpoint_epochs": [1], "resources": {"cpus": 1}, "measures": CHEAP,
}


@pytest.fixture(scope="module")
def swept(ray_address, tmp_path_factory):
    storage = tmp_path_factory.mktemp("store")
    path = storage / "zoo.yaml"
    path.write_text(yaml.safe_dump(SWEEP))
    assert driver.run(sweep_config.load(str(path)), storage=str(storage)) == {"completed": 4}
    return storage


def _measure_files(store):
    return {name: store.local_path("measures", name).stat().st_mtime_ns for name in store.list("measures")}


def test_job_fills_every_trial_and_family_and_a_rerun_computes_nothing(swept):
    store = Store(str(swept), "zoo")
    counts = job.run("zoo", storage=str(swept))
    assert counts == {"ok": 4 * len(registry.names()), "error": 0}

    frame = pd.read_parquet(swept / "zoo" / "measures")
    assert set(frame["status"]) == {"ok"}
    assert not frame.duplicated(["trial_id", "measure"]).any()
    for trial_id, group in frame.groupby("trial_id"):
        assert set(group["family"]) == set(registry.names()), trial_id
        for family in registry.names():
            for name in registry.get(family).measures:
                if name.endswith("*"):
                    assert group["measure"].str.startswith(name[:-1]).any(), name
                else:
                    assert name in set(group["measure"]), name
    assert frame["settings"].str.contains('"resolution": 0.05').any()  # sweep.yaml settings used
    assert len(pd.read_parquet(swept / "zoo" / "el2n")) == 4 * 96
    assert set(pd.read_parquet(swept / "zoo" / "pruning_curves")["kept_fraction"]) == {1.0, 0.5, 0.0}

    before = _measure_files(store)
    assert job.run("zoo", storage=str(swept)) == {"ok": 0, "error": 0}
    assert _measure_files(store) == before


def test_forced_rerun_reproduces_every_value(swept):
    first = pd.read_parquet(swept / "zoo" / "measures").sort_values(["trial_id", "measure"]).reset_index(drop=True)
    job.run("zoo", storage=str(swept), measures="norms,pac_bayes,flatness,margins", force=True)
    again = pd.read_parquet(swept / "zoo" / "measures").sort_values(["trial_id", "measure"]).reset_index(drop=True)
    pd.testing.assert_series_equal(first["value"], again["value"])
    assert list(first["measure"]) == list(again["measure"])


def test_a_corrupt_checkpoint_becomes_error_rows_and_the_rest_still_runs(swept, tmp_path):
    copy = tmp_path / "store"
    shutil.copytree(swept, copy)
    store = Store(str(copy), "zoo")
    victim = sorted(store.trials()["trial_id"])[0]
    store.local_path("checkpoints", victim, "final.pt").write_bytes(b"truncated")
    counts = job.run("zoo", storage=str(copy), measures="norms,training", force=True)
    assert counts == {"ok": 2 * 3, "error": 2}
    frame = pd.read_parquet(copy / "zoo" / "measures")
    bad = frame[(frame["trial_id"] == victim) & frame["family"].isin(["norms", "training"])]
    assert set(bad["status"]) == {"error"} and bad["error"].str.contains("final.pt").all()
    good = frame[(frame["trial_id"] != victim) & frame["family"].isin(["norms", "training"])]
    assert set(good["status"]) == {"ok"}


def test_a_damaged_early_checkpoint_fails_only_the_families_that_need_it(swept, tmp_path):
    copy = tmp_path / "store"
    shutil.copytree(swept, copy)
    store = Store(str(copy), "zoo")
    victim = sorted(store.trials()["trial_id"])[0]
    path = store.local_path("checkpoints", victim, "epoch_1.pt")
    path.write_bytes(path.read_bytes()[:100])
    counts = job.run("zoo", storage=str(copy), measures="el2n,norms,training", force=True)
    assert counts == {"ok": 4 * 3 - 1, "error": 1}
    frame = pd.read_parquet(copy / "zoo" / "measures")
    bad = frame[frame["status"] == "error"]
    assert set(bad["trial_id"]) == {victim} and set(bad["family"]) == {"el2n"}
    (message,) = set(bad["error"])
    assert "\n" not in message and f"{copy / 'zoo'}/checkpoints/{victim}/epoch_1.pt" in message
    assert "genzoo sweep resume" in message  # what to do about it


def test_unknown_family_and_setting_are_one_line_errors(swept, capsys):
    assert main(["measure", "zoo", "--storage", str(swept), "--measures", "vibes"]) == 2
    assert capsys.readouterr().err.strip().startswith("genzoo: error: --measures: unknown family 'vibes'")
    with pytest.raises(registry.MeasureError, match=r"^measures.flatness.colour: unknown setting"):
        registry.settings_for("flatness", {"colour": 1})


def test_gpu_tasks_on_a_cluster_without_a_gpu_are_refused_before_anything_runs(swept, capsys):
    before = _measure_files(Store(str(swept), "zoo"))
    assert main(["measure", "zoo", "--storage", str(swept), "--gpus-per-task", "0.5", "--force"]) == 2
    assert capsys.readouterr().err.strip() == (
        "genzoo: error: --gpus-per-task: 0.5 GPU per task requested but the Ray cluster has no GPU "
        "(use --gpus-per-task 0, or --autoscale if the cluster adds nodes on demand)")
    assert _measure_files(Store(str(swept), "zoo")) == before


def test_analyze_writes_tables_figures_and_report_from_the_store(swept, capsys):
    job.run("zoo", storage=str(swept))
    # Two epochs on 96 examples leave the gap nearly constant; the test loss still ranks them.
    assert main(["analyze", "zoo", "--storage", str(swept), "--target", "test_loss"]) == 0
    out = capsys.readouterr().out
    assert "Table 1" in out and "prunability" in out and "report:" in out
    analysis = swept / "zoo" / "analysis"
    for name in ("table1.md", "table1.csv", "table2.md", "table3.md", "report.md"):
        assert (analysis / name).exists(), name
    assert list((analysis / "figures").glob("*.png"))
    table1 = pd.read_csv(analysis / "table1.csv")
    assert {"prunability", "pac_bayes_mag_flat", "hessian_trace", "el2n", "normalized_margins"} <= set(table1["measure"])


EMA_SWEEP = {**SWEEP, "experiment": "ema_zoo", "mode": "ema", "mode_settings": {"decay": 0.8},
             "grid": {"dropout": [0.0, 0.5]}}


def test_a_trial_with_several_models_is_measured_and_analysed_model_by_model(ray_address, tmp_path, capsys):
    path = tmp_path / "ema_zoo.yaml"
    path.write_text(yaml.safe_dump(EMA_SWEEP))
    storage = str(tmp_path)
    assert driver.run(sweep_config.load(str(path)), storage=storage) == {"completed": 2}
    models = pd.read_parquet(tmp_path / "ema_zoo" / "models")
    assert sorted(models["model_id"]) == ["ema", "ema", "final", "final"]
    for trial_id in models["trial_id"].unique():
        assert {"final.pt", "ema.pt"} <= set(Store(storage, "ema_zoo").list("checkpoints", trial_id))

    counts = job.run("ema_zoo", storage=storage, measures="norms,training",
                     overrides=["training.batch_size=64", "norms.parameter_count_of=weights"])
    assert counts == {"ok": 2 * 2 * 2, "error": 0}
    frame = pd.read_parquet(tmp_path / "ema_zoo" / "measures")
    assert not frame.duplicated(["trial_id", "model_id", "measure"]).any()
    assert sorted(frame.groupby(["trial_id", "model_id"]).size().index.get_level_values(1)) == \
        ["ema", "ema", "final", "final"]
    assert frame[frame["family"] == "training"]["settings"].str.contains('"batch_size": 64').all()
    # the averaged weights are another model: their norms differ from the final weights'
    fro = frame[frame["measure"] == "sum_of_fro"].pivot(index="trial_id", columns="model_id", values="value")
    assert (fro["ema"] != fro["final"]).all()

    assert main(["analyze", "ema_zoo", "--storage", storage, "--target", "test_loss"]) == 0
    table1 = pd.read_csv(tmp_path / "ema_zoo" / "analysis" / "table1.csv")
    assert set(table1["n_models"]) == {4}


def test_bad_overrides_are_one_line_errors_before_anything_runs(swept, capsys):
    before = _measure_files(Store(str(swept), "zoo"))
    for override, message in [("flatness.subset=many", "measures.flatness.subset: got 'many'"),
                              ("flatnes.subset=5", "measures.flatnes: unknown family"),
                              ("subset=5", "--set: got 'subset=5', allowed: FAMILY.SETTING=VALUE")]:
        assert main(["measure", "zoo", "--storage", str(swept), "--set", override, "--force"]) == 2
        assert capsys.readouterr().err.strip().startswith(f"genzoo: error: {message}")
    assert _measure_files(Store(str(swept), "zoo")) == before


def test_one_task_per_model_and_a_failing_family_leaves_the_others(swept, tmp_path, capsys):
    copy = tmp_path / "store"
    shutil.copytree(swept, copy)
    # Settings out of range are refused before anything runs; a family can still fail on a
    # model: here norms, whose initial weights do not load.
    store = Store(str(copy), "zoo")
    for trial_id in store.trials()["trial_id"]:
        store.local_path("checkpoints", trial_id, "init.pt").write_bytes(b"damaged")
    counts = job.run("zoo", storage=str(copy), measures="norms,pac_bayes,training", force=True)
    out = capsys.readouterr().out
    assert "4 tasks, one per model" in out
    assert counts == {"ok": 4 * 2, "error": 4}
    frame = pd.read_parquet(copy / "zoo" / "measures")
    assert set(frame[frame.family == "norms"]["status"]) == {"error"}
    assert set(frame[frame.family.isin(["pac_bayes", "training"])]["status"]) == {"ok"}
    # the same values as when each family ran in a task of its own
    first = pd.read_parquet(swept / "zoo" / "measures").set_index(["trial_id", "measure"])["value"]
    again = frame[frame.family.isin(["pac_bayes", "training"])].set_index(["trial_id", "measure"])["value"]
    pd.testing.assert_series_equal(again.sort_index(), first.loc[again.index].sort_index())


def test_non_finite_values_are_error_rows_with_the_reason(monkeypatch):
    from dataclasses import dataclass

    from measures.spec import MeasureSettings, MeasureSpec, number

    @dataclass(frozen=True)
    class ToySettings(MeasureSettings):
        scale: float = number(1.0)

    toy = MeasureSpec("toy", "measure_toys:non_finite_family", ("finite", "infinite", "undefined"), ToySettings)
    monkeypatch.setattr(job.registry, "get", lambda name: toy)
    rows, _ = job._compute_family(None, "t", "final", "toy", {"scale": 2.0})
    by_measure = {row["measure"]: row for row in rows}
    assert by_measure["finite"]["status"] == "ok" and by_measure["finite"]["value"] == 2.0
    for name, shown in (("infinite", "inf"), ("undefined", "nan")):
        row = by_measure[name]
        assert row["status"] == "error" and pd.isna(row["value"])
        assert row["error"].startswith(f"{name} = {shown}: not a finite number")


def test_changed_settings_recompute_exactly_the_affected_rows(swept, tmp_path, capsys):
    copy = tmp_path / "store"
    shutil.copytree(swept, copy)
    job.run("zoo", storage=str(copy), measures="norms,training")
    before = pd.read_parquet(copy / "zoo" / "measures")
    capsys.readouterr()

    counts = job.run("zoo", storage=str(copy), measures="norms,training", overrides=["norms.fold_batchnorm=false"])
    assert counts == {"ok": 4, "error": 0}
    assert "4 stored with other settings (recomputed)" in capsys.readouterr().out
    after = pd.read_parquet(copy / "zoo" / "measures")
    key = ["trial_id", "model_id", "measure"]
    old, new = before.set_index(key).sort_index(), after.set_index(key).sort_index()
    assert old.index.equals(new.index)
    changed = new["family"] == "norms"
    # Only the norms rows were recomputed, with the new settings; the training rows are the same.
    assert new.loc[changed, "settings"].str.contains('"fold_batchnorm": false').all()
    assert old.loc[changed, "settings"].str.contains('"fold_batchnorm": true').all()
    pd.testing.assert_frame_equal(new.loc[~changed], old.loc[~changed])
    # The settings are now those asked for: the same command computes nothing.
    assert job.run("zoo", storage=str(copy), measures="norms,training",
                   overrides=["norms.fold_batchnorm=false"]) == {"ok": 0, "error": 0}
    # Back to the sweep's settings: the norms rows again, and the progress line says so.
    capsys.readouterr()
    assert job.run("zoo", storage=str(copy), measures="norms,training") == {"ok": 4, "error": 0}
    assert "4 (model, family) tasks to run over 4 models of 4 trials; 4 already stored, " \
           "4 stored with other settings (recomputed)" in capsys.readouterr().out


def test_a_row_whose_long_table_is_missing_is_computed_again(swept, tmp_path, capsys):
    copy = tmp_path / "store"
    shutil.copytree(swept, copy)
    job.run("zoo", storage=str(copy), measures="el2n")
    store = Store(str(copy), "zoo")
    lost = store.list("el2n")[0]
    store.delete("el2n", lost)
    capsys.readouterr()
    assert job.run("zoo", storage=str(copy), measures="el2n") == {"ok": 1, "error": 0}
    assert "1 stored without their long table (recomputed)" in capsys.readouterr().out
    assert lost in store.list("el2n")

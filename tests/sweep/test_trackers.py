"""``genzoo sweep run --log tensorboard|mlflow|wandb`` (issue 27): a real tiny sweep per tracker,
read back with the tracker's own reader: one run per Tune trial, the trial's train fields as its
hyperparameters, its per-epoch metrics equal to the store's epochs table."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sweep import trackers
from sweep.cli import main
from sweep.store import Store

TINY = {
    "experiment": "tracked", "dataset": "digits", "model": "nin",
    "train": {"epochs": 2, "lr": 0.05, "train_size": 32, "batch_size": 32, "depth": 2},
    "grid": {"width": [4, 6]}, "seeds": [0], "resources": {"cpus": 1},
}


def _write(tmp_path, **changes):
    document = {**yaml.safe_load(yaml.safe_dump(TINY)), **changes}
    path = tmp_path / "tracked.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def _series(store: Store, trial_id: str, metric: str = "test_acc"):
    epochs = store.epochs(trial_id)
    return [(int(e), pytest.approx(float(v), rel=1e-6)) for e, v in zip(epochs["epoch"], epochs[metric])]


def _sweep(tmp_path, *flags, **changes):
    storage = tmp_path / "store"
    assert main(["sweep", "run", str(_write(tmp_path, **changes)), "--storage", str(storage), *flags]) == 0
    store = Store(str(storage), "tracked")
    return store, {row.trial_id: row for row in store.trials().itertuples()}


def _accumulators(folder: Path):
    """TensorBoard's own reader, one per run folder (a folder with event files)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = {}
    for events in sorted(folder.rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events.parent))
        accumulator.Reload()
        runs[events.parent.name] = accumulator
    return runs


def _hparams(accumulator) -> dict:
    from tensorboard.plugins.hparams import plugin_data_pb2

    for content in accumulator.PluginTagToContent("hparams").values():
        data = plugin_data_pb2.HParamsPluginData.FromString(content)
        if data.HasField("session_start_info"):
            return {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
                    for k, v in data.session_start_info.hparams.items()}
    raise AssertionError("no hparams written")


def _scalars(accumulator, tag):
    return [(event.step, pytest.approx(event.value, rel=1e-6)) for event in accumulator.Scalars(tag)]


def test_tensorboard_event_files_hold_each_trials_hyperparameters_and_per_epoch_metrics(ray_address, tmp_path):
    pytest.importorskip("tensorboard", reason="the test reads event files with tensorboard (the test extra)")
    store, trials = _sweep(tmp_path, "--log", "tensorboard")
    runs = _accumulators(tmp_path / "store" / "tracked" / "_tune" / "run-1")
    assert sorted(runs) == sorted(trials)  # one run per trial, in its Tune trial's folder
    for trial_id, accumulator in runs.items():
        for metric in ("test_acc", "train_loss"):
            assert _scalars(accumulator, f"ray/tune/{metric}") == _series(store, trial_id, metric)
        params = _hparams(accumulator)
        assert params["width"] == trials[trial_id].width and params["trial_id"] == trial_id
        assert params["lr"] == pytest.approx(0.05) and params["dataset"] == "digits"
        assert not any(key.startswith("trial/") or key == "storage" for key in params)  # not Tune's param space


def test_a_packed_trial_logs_each_models_metrics_under_its_trial_id_in_the_chosen_folder(ray_address, tmp_path):
    pytest.importorskip("tensorboard", reason="the test reads event files with tensorboard (the test extra)")
    board = tmp_path / "board"
    store, trials = _sweep(tmp_path, "--log", "tensorboard", "--tensorboard-dir", str(board),
                           grid={"width": [4]}, seeds=[0, 1], resources={"cpus": 1, "pack": 2})
    first, second = sorted(trials, key=lambda t: trials[t].seed)
    runs = _accumulators(board)
    assert list(runs) == [f"pack2-{first}"] and (board / "tracked" / f"pack2-{first}").is_dir()
    accumulator = runs[f"pack2-{first}"]
    for trial_id in (first, second):
        assert _scalars(accumulator, f"ray/tune/{trial_id}/test_acc") == _series(store, trial_id)
    params = _hparams(accumulator)
    assert params["seed"] == "0,1" and params["trial_id"] == f"{first},{second}"
    assert params["width"] == 4 and params["models"] == 2
    assert not list((tmp_path / "store" / "tracked" / "_tune").rglob("events.out.tfevents.*"))


def test_mlflow_file_store_has_one_run_per_trial_with_its_params_and_metric_history(ray_address, tmp_path,
                                                                                    monkeypatch):
    pytest.importorskip("mlflow", reason="--log mlflow needs mlflow (pip install mlflow-skinny; in the test extra)")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)  # the driver sets it for its file store
    store, trials = _sweep(tmp_path, "--log", "mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # for the reader
    client = MlflowClient((tmp_path / "store" / "tracked" / "_mlruns").as_uri())
    experiment = client.get_experiment_by_name("tracked")
    runs = {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == sorted(trials)
    for trial_id, run in runs.items():
        assert run.info.status == "FINISHED"
        assert run.data.params["width"] == str(trials[trial_id].width)
        assert run.data.params["trial_id"] == trial_id and "storage" not in run.data.params
        history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "test_acc"))
        assert history == _series(store, trial_id)


def test_wandb_offline_files_have_one_run_per_trial_with_its_config_and_history(ray_address, tmp_path, monkeypatch):
    # wandb's reader of its transaction log, `wandb leet inspect`, is in wandb 0.31 on.
    pytest.importorskip("wandb", minversion="0.31", reason="--log wandb needs wandb>=0.31 (in the test extra)")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    store, trials = _sweep(tmp_path, "--log", "wandb")
    files = sorted((tmp_path / "store" / "tracked" / "_tune" / "run-1").rglob("offline-run-*/run-*.wandb"))
    assert len(files) == len(trials)
    seen = set()
    for path in files:
        # wandb's own reader of its transaction log.
        text = subprocess.run([str(Path(sys.executable).parent / "wandb"), "leet", "inspect", "--json", str(path)],
                              capture_output=True, text=True, timeout=60, check=True).stdout
        records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        run = next(r["run"] for r in records if r["type"] == "run")
        trial_id = run["display_name"]
        assert run["project"] == "tracked"
        config = run["config"]["update"]
        assert config["width"] == trials[trial_id].width and config["trial_id"] == trial_id
        history = [r["history"]["item"] for r in records if r["type"] == "history"]
        assert [(int(h["epoch"]), pytest.approx(h["test_acc"])) for h in history] == _series(store, trial_id)
        assert [int(r["history"]["step"]["num"]) for r in records if r["type"] == "history"] == [1, 2]
        seen.add(trial_id)
    assert seen == set(trials)


def test_sweep_resume_logs_the_trials_it_trains(ray_address, tmp_path):
    pytest.importorskip("tensorboard", reason="the test reads event files with tensorboard (the test extra)")
    from sweep import config as sweep_config
    from sweep import driver

    storage, board = tmp_path / "store", tmp_path / "board"
    config = sweep_config.load(str(_write(tmp_path, grid={"width": [4]}, train={**TINY["train"], "epochs": 1})))
    # A launch that recorded its sweep and stopped before training anything.
    Store(str(storage), "tracked").write_text(driver._provenance(config, driver.provenance.now()), "sweep.yaml")
    assert main(["sweep", "resume", "tracked", "--storage", str(storage), "--log", "tensorboard",
                 "--tensorboard-dir", str(board)]) == 0
    (trial_id,) = [c.trial_id for c in config.trials()]
    runs = _accumulators(board / "tracked")
    assert list(runs) == [trial_id]
    assert _scalars(runs[trial_id], "ray/tune/test_acc") == _series(Store(str(storage), "tracked"), trial_id)


def test_an_unknown_tracker_is_one_line_and_exit_2(tmp_path, capsys):
    storage = tmp_path / "store"
    assert main(["sweep", "run", str(_write(tmp_path)), "--storage", str(storage), "--log", "tensorboard,x"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "genzoo: error: --log: got 'x', allowed: tensorboard, mlflow, wandb"]
    assert not storage.exists()


def test_a_missing_tracker_package_is_one_line_with_the_pip_command_before_anything_is_written(tmp_path, capsys,
                                                                                               monkeypatch):
    monkeypatch.setattr(trackers, "_installed", lambda module: module != "mlflow")
    storage = tmp_path / "store"
    assert main(["sweep", "run", str(_write(tmp_path)), "--storage", str(storage), "--log", "tensorboard",
                 "--log", "mlflow"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["genzoo: error: --log mlflow: the mlflow package is not installed; pip install mlflow-skinny "
                   "(or pip install 'genzoo[trackers]')"]
    assert not storage.exists()


def test_wandb_online_without_an_api_key_is_one_line_before_anything_is_written(tmp_path, capsys, monkeypatch):
    pytest.importorskip("wandb", reason="--log wandb needs wandb (pip install wandb; in the test extra)")
    for name in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc, no wandb settings
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    storage = tmp_path / "store"
    assert main(["sweep", "run", str(_write(tmp_path)), "--storage", str(storage), "--log", "wandb"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "genzoo: error: --log wandb: no W&B API key; run `wandb login`, set WANDB_API_KEY, or log offline with "
        "WANDB_MODE=offline (then `wandb sync`)"]
    assert not storage.exists()


def test_log_values_repeat_or_comma_separate_and_none_adds_no_callback(tmp_path, monkeypatch):
    assert trackers.parse(["tensorboard,wandb", "mlflow", "wandb"]).names == ("tensorboard", "wandb", "mlflow")
    assert trackers.parse(None) == trackers.Trackers()
    assert trackers.callbacks(trackers.parse(None), Store(str(tmp_path), "x"), "x") == []
    monkeypatch.chdir(tmp_path)
    assert trackers.parse(["tensorboard"], "tb").tensorboard_dir == str(tmp_path / "tb")
    with pytest.raises(trackers.SweepConfigError, match="--tensorboard-dir: only with --log tensorboard"):
        trackers.parse(["mlflow"], tensorboard_dir=str(tmp_path))

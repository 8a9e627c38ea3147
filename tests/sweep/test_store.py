import os

import pandas as pd
import pytest

from sweep.store import EPOCH_SCHEMA, Store, StoreError, resolve_storage


def test_relative_storage_becomes_absolute_and_uris_are_kept(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GENZOO_STORAGE", raising=False)
    assert resolve_storage(None) == str(tmp_path / "results")
    assert resolve_storage("zoo") == str(tmp_path / "zoo")
    assert resolve_storage("s3://bucket/prefix/") == "s3://bucket/prefix"
    monkeypatch.setenv("GENZOO_STORAGE", str(tmp_path / "env"))
    assert resolve_storage(None) == str(tmp_path / "env")


def test_rewriting_a_trials_epochs_replaces_its_rows_and_leaves_no_temporaries(tmp_path):
    store = Store(str(tmp_path), "exp")
    record = {"epoch": 1, "lr": 0.1, "minibatch_loss": 1.0, "train_loss": 1.0, "train_acc": 0.5,
              "test_loss": 1.1, "test_acc": 0.4, "seconds": 1.0, "images_per_second": 10.0, "status": "completed"}
    store.write_epochs("t1", [record])
    store.write_epochs("t1", [record, {**record, "epoch": 2}])
    store.write_epochs("t2", [record])
    frame = pd.read_parquet(tmp_path / "exp" / "epochs")
    assert sorted(zip(frame["trial_id"], frame["epoch"])) == [("t1", 1), ("t1", 2), ("t2", 1)]
    assert [n for n in os.listdir(tmp_path / "exp" / "epochs") if n.startswith(".")] == []
    assert list(store.epochs("t1")["epoch"]) == [1, 2]
    assert list(store.epochs("missing").columns) == EPOCH_SCHEMA.names


def test_measure_files_with_and_without_errors_read_back_as_one_table(tmp_path):
    store = Store(str(tmp_path), "exp")
    ok = {"family": "norms", "measure": "sum_two_norms", "value": 1.5, "seconds": 0.1, "status": "ok",
          "error": None, "settings": "{}"}
    store.write_measures("a", [ok])
    store.write_measures("b", [{**ok, "value": float("nan"), "status": "error", "error": "boom"}])
    frame = pd.read_parquet(tmp_path / "exp" / "measures")
    assert len(frame) == 2 and set(frame["status"]) == {"ok", "error"}


def test_a_failed_write_leaves_the_previous_file_intact(tmp_path):
    store = Store(str(tmp_path), "exp")
    store.write_text("first", "note.txt")

    class CrashBeforeRename:
        def __init__(self, fs):
            self.fs = fs

        def __getattr__(self, name):
            return getattr(self.fs, name)

        def move(self, src, dst):
            raise OSError("disk vanished")

    store.fs = CrashBeforeRename(store.fs)
    with pytest.raises(OSError, match="disk vanished"):
        store.write_text("second", "note.txt")
    assert store.read_text("note.txt") == "first"
    assert [n for n in os.listdir(tmp_path / "exp") if n.startswith(".")] == []


def test_bad_experiment_names_and_missing_files_are_one_line_errors(tmp_path):
    with pytest.raises(StoreError, match="^experiment:"):
        Store(str(tmp_path), "a/b")
    with pytest.raises(StoreError, match="trials.parquet: not found"):
        Store(str(tmp_path), "exp").read_bytes("trials.parquet")

"""Compaction of a store's per-trial files into parts (sweep/compact.py): every reader of genzoo
sees every row exactly once before, during and after a compaction, a compaction killed at any
write loses nothing and the next one repairs it, and a trial rewritten after compaction
supersedes its compacted rows."""

from __future__ import annotations

import json
import os
import shutil
import threading

import duckdb
import pandas as pd
import polars as pl
import pyarrow.parquet as pq
import pytest

from sweep import compact
from sweep.store import LONG_TABLE_SCHEMAS, Store

TABLES = ("epochs", "models", "measures", "el2n")


def _trial(i: int) -> str:
    return f"nin-{i:016x}"


def _write_trial(store: Store, i: int, epochs: int = 3, shift: float = 0.0) -> None:
    trial_id = _trial(i)
    store.write_epochs(trial_id, [{"epoch": e, "lr": 0.1, "minibatch_loss": 1.0 / e, "train_loss": 1.0 / e + shift,
                                   "train_acc": 0.5 + e / 100, "test_loss": 1.2 / e, "test_acc": 0.4 + e / 100,
                                   "seconds": 1.5, "images_per_second": 100.0, "status": "completed",
                                   "host": "h", "device": "cpu", "finished_at": pd.Timestamp("2026-01-01", tz="UTC")}
                                  for e in range(1, epochs + 1)])
    store.write_models(trial_id, [{"model_id": m, "epoch": epochs, "step": 10 * epochs, "weights": 100,
                                   "sparsity": 0.0, "stability": None, "reached_target": None,
                                   "train_loss": 0.1 + shift, "train_acc": 0.9, "test_loss": 0.2, "test_acc": 0.8}
                                  for m in ("final", "ema")])
    store.write_measures(trial_id, [{"model_id": "final", "family": "norms", "measure": f"m{k}",
                                     "value": i + k + shift, "seconds": 0.1, "status": "ok", "error": None,
                                     "settings": "{}"} for k in range(4)])
    for model_id in ("final", "ema"):
        name = f"{trial_id}.parquet" if model_id == "final" else f"{trial_id}.{model_id}.parquet"
        frame = pd.DataFrame({"trial_id": trial_id, "model_id": model_id, "index": range(5),
                              "score": [i + 0.5 + shift] * 5, "noisy": [False] * 5, "loss": [0.25] * 5})
        store.write_table(frame, "el2n", name, schema=LONG_TABLE_SCHEMAS["el2n"])


def _read_all(store: Store) -> dict:
    return {"epochs": store.epochs(), "models": store.models(), "measures": store.measures(),
            "el2n": store.read_folder("el2n")}


def _assert_same(store: Store, expected: dict) -> None:
    """Every table read whole, and every trial's epochs and models read on their own."""
    got = _read_all(store)
    for name in TABLES:
        pd.testing.assert_frame_equal(got[name], expected[name], check_dtype=True)
    for trial_id in expected["epochs"]["trial_id"].unique():
        for name, read in (("epochs", store.epochs), ("models", store.models)):
            rows = expected[name][expected[name]["trial_id"] == trial_id].reset_index(drop=True)
            pd.testing.assert_frame_equal(read(trial_id), rows, check_dtype=True)


@pytest.fixture
def store(tmp_path):
    store = Store(str(tmp_path / "store"), "exp")
    for i in range(12):
        _write_trial(store, i)
    return store


def _names(store: Store, folder: str) -> list:
    """The table files of a folder (its parts and per-trial files; not the part index)."""
    return sorted(n for n in os.listdir(store.path(folder)) if n.endswith(".parquet"))


def test_compaction_keeps_every_row_once_for_genzoo_and_raw_readers(store):
    before = _read_all(store)
    per_trial = store.epochs(_trial(3))
    done = compact.compact(store, {_trial(i) for i in range(12)}, minimum=1)
    assert sorted(r.folder for r in done) == sorted(TABLES)
    for name in TABLES:
        names = _names(store, name)
        assert len(names) == 1 and compact.is_part(names[0]), names
    _assert_same(store, before)
    pd.testing.assert_frame_equal(store.epochs(_trial(3)), per_trial)
    assert store.read_source("el2n", f"{_trial(3)}.ema.parquet")["model_id"].tolist() == ["ema"] * 5
    assert store.read_source("epochs", "nin-missing.parquet") is None
    assert compact.source_names(store, "el2n") == {f"{_trial(i)}{m}.parquet" for i in range(12) for m in ("", ".ema")}
    # Raw folder reads at rest: exactly once, in pandas, duckdb and polars.
    for name in TABLES:
        folder = store.path(name)
        assert len(pd.read_parquet(folder)) == len(before[name])
        assert duckdb.sql(f"select count(*) from read_parquet('{folder}/*.parquet')").fetchall()[0][0] == len(before[name])
        assert len(pl.read_parquet(f"{folder}/*.parquet")) == len(before[name])
    # Nothing more to do: no new part, no write.
    assert compact.compact(store, {_trial(i) for i in range(12)}, minimum=1) == []


def test_only_eligible_trials_and_only_from_the_minimum_number_of_files(store):
    assert compact.compact_folder(store, "epochs", lambda n: True, minimum=13).part is None
    result = compact.compact_folder(store, "epochs", lambda n: compact.source_trial(n) in {_trial(1), _trial(2)},
                                    minimum=2)
    assert result.files == 2 and result.rows == 6
    assert sorted(n for n in _names(store, "epochs") if not compact.is_part(n)) == \
        sorted(f"{_trial(i)}.parquet" for i in range(12) if i not in (1, 2))


def test_a_trial_rewritten_after_compaction_supersedes_its_compacted_rows(store):
    compact.compact(store, {_trial(i) for i in range(12)}, minimum=1)
    _write_trial(store, 4, epochs=2, shift=10.0)  # e.g. retrained, or measures recomputed
    epochs = store.epochs()
    assert len(epochs) == 11 * 3 + 2 and not epochs.duplicated(["trial_id", "epoch"]).any()
    assert store.epochs(_trial(4))["train_loss"].tolist() == [11.0, 10.5]
    measures = store.measures().set_index(["trial_id", "measure"])["value"]
    assert measures[(_trial(4), "m0")] == 14.0 and measures.index.is_unique
    # A raw folder read sees the old copy too until the next compaction, which merges it away
    # whatever the number of files.
    assert len(pd.read_parquet(store.path("epochs"))) == 11 * 3 + 2 + 3
    result = compact.compact_folder(store, "epochs", lambda n: True, minimum=100)
    assert result.part is not None and result.parts_merged == 1
    raw = pd.read_parquet(store.path("epochs"))
    assert len(raw) == 11 * 3 + 2 and not raw.duplicated(["trial_id", "epoch"]).any()
    pd.testing.assert_frame_equal(store.epochs(), epochs)


def test_a_file_rewritten_while_it_is_compacted_is_kept_and_wins(store):
    def rewrite():
        _write_trial(store, 5, epochs=1, shift=7.0)

    result = compact.compact_folder(store, "epochs", lambda n: True, minimum=1, before_delete=rewrite)
    assert result.kept == [f"{_trial(5)}.parquet"]
    assert store.epochs(_trial(5))["train_loss"].tolist() == [8.0]
    assert len(store.epochs()) == 11 * 3 + 1


def test_parts_merge_as_a_binary_counter(tmp_path):
    store = Store(str(tmp_path / "s"), "exp")
    for i in range(64):
        _write_trial(store, i)
        compact.compact_folder(store, "epochs", lambda n: True, minimum=1)
        parts = [n for n in _names(store, "epochs") if compact.is_part(n)]
        assert len(parts) == bin(i + 1).count("1")  # parts of 3 × 2^k rows
    assert len(store.epochs()) == 64 * 3 and not store.epochs().duplicated(["trial_id", "epoch"]).any()


class Killed(BaseException):
    """The process died at this write (nothing after it runs, no cleanup either)."""


class Recording:
    """A store's filesystem that calls ``hook(operation)`` after every write, rename and
    delete, and can die at the n-th of them."""

    MUTATING = ("open_output_stream", "move", "delete_file", "delete_dir", "copy_file")

    def __init__(self, fs, hook=None, die_at=None):
        self.fs, self.hook, self.die_at, self.count, self.dead = fs, hook, die_at, 0, False

    def __getattr__(self, name):
        attribute = getattr(self.fs, name)
        if name not in self.MUTATING:
            return attribute

        def call(*args, **kwargs):
            if self.dead:
                raise Killed(name)
            if self.die_at is not None and self.count == self.die_at:
                self.dead = True
                raise Killed(f"{name} {args}")
            self.count += 1
            out = attribute(*args, **kwargs)
            if self.hook is not None and name != "open_output_stream":
                self.hook(name)
            return out
        return call


def _second_round(store: Store, first: int = 12) -> None:
    """After a first compaction of trials 0 to first - 1: two of them rewritten and three new,
    so that the next compaction writes files into a part, merges the first part and deletes
    both."""
    for i in (2, first - 1):
        _write_trial(store, i, epochs=4, shift=1.0)
    for i in range(first, first + 3):
        _write_trial(store, i)


def test_a_reader_between_every_write_rename_and_delete_sees_every_row_once(store):
    trials = {_trial(i) for i in range(15)}
    for round_ in range(2):
        if round_:
            _second_round(store)
        expected = _read_all(store)
        seen = []

        def check(operation):
            seen.append(operation)
            fs, store.fs = store.fs, recording.fs  # the reader reads the real files
            try:
                _assert_same(store, expected)
            finally:
                store.fs = fs

        recording = Recording(store.fs, hook=check)
        store.fs = recording
        try:
            compact.compact(store, trials, minimum=1)
        finally:
            store.fs = recording.fs
        assert "move" in seen and "delete_file" in seen
        _assert_same(store, expected)


@pytest.mark.parametrize("round_", [0, 1])
def test_a_compaction_killed_at_every_write_loses_nothing_and_the_next_one_repairs_it(tmp_path, round_):
    trials = {_trial(i) for i in range(8)}
    template = Store(str(tmp_path / "template"), "exp")
    for i in range(5):
        _write_trial(template, i)
    if round_:
        compact.compact(template, trials, minimum=1)
        _second_round(template, first=5)
    expected = _read_all(template)
    probe = Store(str(tmp_path / "probe"), "exp")
    shutil.copytree(template.root, probe.root)
    probe.fs = Recording(probe.fs)
    compact.compact(probe, trials, minimum=1)
    writes = probe.fs.count
    assert writes >= 10
    for die_at in range(writes):
        store = Store(str(tmp_path / f"k{die_at}"), "exp")
        shutil.copytree(template.root, store.root)
        real, store.fs = store.fs, Recording(store.fs, die_at=die_at)
        with pytest.raises(Killed):
            compact.compact(store, trials, minimum=1)
        store.fs = real
        _assert_same(store, expected)  # every row readable exactly once
        compact.compact(store, trials, minimum=1)  # the next compaction finishes the job
        _assert_same(store, expected)
        for name in TABLES:
            names = [n for n in os.listdir(store.path(name)) if n != compact.INDEX]
            parts = [n for n in names if compact.is_part(n)]
            # No leftover file or temporary; each part with its list of sources, and no other list.
            assert sorted(names) == sorted(parts + [compact.sidecar(p) for p in parts]), (die_at, names)
            raw = pd.read_parquet(store.path(name))
            assert len(raw) == len(expected[name]), (die_at, name)
        shutil.rmtree(store.root)


def test_a_reader_whose_listing_raced_a_compaction_reads_again(store, monkeypatch):
    """A listing taken while a compaction ran can miss a deleted file and the new part that
    holds its rows; the reader's second listing sees the part and it reads again."""
    expected = store.epochs()
    stale = compact.list_folder(store, "epochs")
    compact.compact_folder(store, "epochs", lambda n: True, minimum=1)
    real = compact.list_folder
    calls = []

    def torn(store_, folder):
        calls.append(folder)
        if len(calls) == 1:  # the first listing: files deleted meanwhile missed, the part not yet seen
            listing = real(store_, folder)
            listing.parts = {}
            listing.files = {k: v for k, v in stale.files.items() if k in listing.files}
            return listing
        return real(store_, folder)

    monkeypatch.setattr(compact, "list_folder", torn)
    pd.testing.assert_frame_equal(store.epochs(), expected)
    assert len(calls) >= 3


def test_reads_in_a_thread_during_compactions_see_every_row_once(store):
    """A reader running beside compactions (no timing assumed: every read it makes, whichever
    instants it falls on, must be exact)."""
    expected = store.epochs()
    errors, reads = [], []
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            try:
                pd.testing.assert_frame_equal(store.epochs(), expected)
                reads.append(1)
            except BaseException as exc:  # reported below
                errors.append(exc)
                return

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(6):
            # Each compaction takes one more file and merges the earlier parts. (Each of their
            # writes and deletes can make a read start again, fewer than READ_ATTEMPTS in all.)
            compact.compact_folder(store, "epochs", lambda n, k=i: compact.source_trial(n) == _trial(k), minimum=1)
    finally:
        stop.set()
        thread.join()
    assert not errors, errors[0]
    pd.testing.assert_frame_equal(store.epochs(), expected)


def test_a_damaged_part_is_one_line_naming_it(store):
    compact.compact(store, {_trial(i) for i in range(12)}, minimum=1)
    (part,) = _names(store, "epochs")
    path = os.path.join(store.path("epochs"), part)
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    compact._SOURCES.clear()
    with pytest.raises(Exception) as raised:
        store.epochs()
    assert f"epochs/{part}" in str(raised.value) and "\n" not in str(raised.value)


def test_a_part_keeps_its_rows_in_row_groups_and_one_source_reads_only_its_own(tmp_path, monkeypatch):
    monkeypatch.setattr(compact, "ROW_GROUP_ROWS", 4)
    store = Store(str(tmp_path / "s"), "exp")
    for i in range(6):
        _write_trial(store, i)
    compact.compact_folder(store, "epochs", lambda n: True, minimum=1)
    (part,) = _names(store, "epochs")
    assert pq.ParquetFile(os.path.join(store.path("epochs"), part)).metadata.num_row_groups == 5
    for i in range(6):
        assert store.epochs(_trial(i))["epoch"].tolist() == [1, 2, 3]
        assert set(store.epochs(_trial(i))["trial_id"]) == {_trial(i)}


def test_min_files_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(compact.ENV_MIN_FILES, "5")
    assert compact.min_files() == 5
    monkeypatch.setenv(compact.ENV_MIN_FILES, "0")
    with pytest.raises(Exception, match="GENZOO_COMPACT_MIN_FILES"):
        compact.min_files()


def test_a_version_2_store_is_raised_to_version_3_without_file_changes(store, capsys):
    """Version 3 allows compacted parts; a genzoo of version 2 refuses such a store (its
    version check) instead of reading the parts twice."""
    import yaml

    from sweep.migrate import store_version, upgrade
    from sweep.store import STORE_VERSION

    store.write_text(yaml.safe_dump({"experiment": "exp", "train": {"epochs": 3}, "store_version": 2}), "sweep.yaml")
    before = {name: _names(store, name) for name in TABLES}
    assert STORE_VERSION == 3 and upgrade(store)
    assert "from layout version 2 to 3" in capsys.readouterr().out
    assert store_version(store) == 3 and not upgrade(store)
    assert {name: _names(store, name) for name in TABLES} == before


def test_genzoo_compact_and_the_readers_one_liners(tmp_path, capsys):
    import yaml

    from sweep import reader
    from sweep.cli import main
    from sweep.config import parse

    document = {"experiment": "cz", "dataset": "digits", "model": "nin", "train": {"epochs": 3, "width": 4, "depth": 1},
                "seeds": [0, 1, 2]}
    store = Store(str(tmp_path), "cz")
    store.write_text(yaml.safe_dump({**parse(document).to_dict(), "store_version": 3}), "sweep.yaml")
    configs = parse(document).trials()
    for config in configs[:2]:  # two finished trials, one pending
        trial_id = config.trial_id
        store.write_epochs(trial_id, [{"epoch": e, "lr": 0.1, "minibatch_loss": 1.0, "train_loss": 1.0, "train_acc": 0.5,
                                       "test_loss": 1.0, "test_acc": 0.5, "seconds": 1.0, "images_per_second": 1.0,
                                       "status": "completed", "host": "h", "device": "cpu",
                                       "finished_at": pd.Timestamp("2026-01-01", tz="UTC")} for e in (1, 2, 3)])
        store.write_models(trial_id, [{"model_id": "final", "epoch": 3, "step": 3, "weights": 1, "sparsity": 0.0,
                                       "stability": None, "reached_target": None, "train_loss": 1.0,
                                       "train_acc": 0.5, "test_loss": 1.0, "test_acc": 0.5}])
        for name in ("init.pt", "final.pt"):
            store.write_bytes(b"x", "checkpoints", trial_id, name)
    before = reader.epochs(str(tmp_path), "cz")
    assert main(["compact", "cz", "--storage", str(tmp_path)]) == 0
    assert "compacted epochs: 2 files into part-000001-" in capsys.readouterr().out
    assert all(compact.is_part(n) for n in _names(store, "epochs"))
    pd.testing.assert_frame_equal(reader.epochs(str(tmp_path), "cz"), before)
    t = reader.table(str(tmp_path), "cz", "epochs")
    assert duckdb.sql("SELECT count(*) FROM t").fetchall()[0][0] == 6 and pl.from_arrow(t).shape[0] == 6
    assert main(["compact", "cz", "--storage", str(tmp_path)]) == 0
    assert "nothing to compact" in capsys.readouterr().out


def test_one_trials_read_uses_the_part_index_not_a_listing_of_the_folder(store, monkeypatch):
    """A trial's own reads (a Tune trial's is_complete, its committer, a measure task) stay one
    or two requests however many files its folder holds: a trial without a file is looked up
    in the index of parts a compaction writes, not in a listing."""
    expected = store.epochs(_trial(2))
    compact.compact(store, {_trial(i) for i in range(6)}, minimum=1)
    assert json.loads(open(os.path.join(store.path("epochs"), compact.INDEX)).read()) == \
        [n for n in _names(store, "epochs") if compact.is_part(n)]
    listings = []
    real = compact.list_folder
    monkeypatch.setattr(compact, "list_folder", lambda *a: listings.append(a) or real(*a))
    pd.testing.assert_frame_equal(store.epochs(_trial(2)), expected)  # from the part
    assert len(store.epochs("nin-not-a-trial")) == 0 and len(store.epochs(_trial(9))) == 3  # absent; a file
    assert listings == []

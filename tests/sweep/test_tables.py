"""Typed store tables: every table written with its explicit Arrow schema, so two stores
concatenate in pandas, pyarrow, polars and duckdb; a trials row round-trips into its
TrainConfig; sweep.reader loads a stored model ready to use."""

import math

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from sweep import reader, trial
from sweep.store import (EPOCH_SCHEMA, MEASURE_SCHEMA, MODEL_SCHEMA, TRIALS_SCHEMA, Store, config_columns,
                         config_from_row)
from sweep.trials_table import TrialsTable
from trainers.config import TrainConfig
from trainers.data import registry as data_registry

TINY = dict(dataset="digits", model="nin", width=8, depth=2, train_size=64, batch_size=32, epochs=1, lr=0.05,
            checkpoint_epochs=(1,))
# Every kind of column: nulls (width on a pending trial is set; train_size None), lists, floats.
TRAINED = TrainConfig(**TINY)
PENDING = TrainConfig(**{**TINY, "width": 4, "train_size": None, "epochs": 2, "lr_schedule": "step", "lr_milestones": (1,),
                         "mode": "ema", "mode_settings": {"decay": 0.9}})
MEASURE = {"model_id": "final", "family": "norms", "measure": "sum_two_norms", "value": 1.5, "seconds": 0.1,
           "status": "ok", "error": None, "settings": "{}"}


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """Store a: one trained trial; store b: only a pending trial (all status columns null)."""
    root = tmp_path_factory.mktemp("stores")
    torch.set_num_threads(1)
    a, b = Store(str(root), "a"), Store(str(root), "b")
    trial.train_trial(TRAINED, a, device="cpu")
    TrialsTable(a, [TRAINED]).write()
    TrialsTable(b, [PENDING]).write()
    a.write_measures(TRAINED.trial_id, [MEASURE])
    b.write_measures(PENDING.trial_id, [{**MEASURE, "value": math.nan, "status": "error", "error": "boom"}])
    b.write_epochs(PENDING.trial_id, [])
    b.write_models(PENDING.trial_id, [])
    return root, a, b


def _files(root, table):
    if table == "trials":
        return [str(root / name / "trials.parquet") for name in ("a", "b")]
    return sorted(str(p) for name in ("a", "b") for p in (root / name / table).glob("*.parquet"))


SCHEMAS = {"trials": TRIALS_SCHEMA, "epochs": EPOCH_SCHEMA, "models": MODEL_SCHEMA, "measures": MEASURE_SCHEMA}


@pytest.mark.parametrize("table", list(SCHEMAS))
def test_every_table_is_written_with_its_schema(stores, table):
    root, _, _ = stores
    files = _files(root, table)
    assert len(files) == 2
    for path in files:
        schema = pq.read_schema(path).remove_metadata()
        assert schema == SCHEMAS[table]
        assert not any(pa.types.is_null(f.type) for f in schema)


def test_trials_schema_types():
    types = {f.name: f.type for f in TRIALS_SCHEMA}
    assert types["train_size"] == pa.int64() and types["error"] == pa.string()
    assert types["lr_milestones"] == pa.list_(pa.int64()) == types["checkpoint_epochs"]
    assert types["mode_settings"] == pa.string() and types["augment"] == pa.bool_()
    assert types["started_at"] == pa.timestamp("us", tz="UTC") and types["host"] == pa.string()


@pytest.mark.parametrize("table", list(SCHEMAS))
def test_two_stores_concatenate_in_pandas_pyarrow_polars_and_duckdb(stores, table):
    root, _, _ = stores
    files = _files(root, table)
    rows = sum(pq.read_metadata(f).num_rows for f in files)
    assert len(pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)) == rows
    assert pa.concat_tables([pq.read_table(f) for f in files]).num_rows == rows
    assert pl.concat([pl.read_parquet(f) for f in files]).height == rows
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet({files!r})").fetchall()[0][0] == rows


def test_trial_rows_hold_real_lists_nulls_and_provenance(stores):
    root, _, _ = stores
    both = pl.concat([pl.read_parquet(f) for f in _files(root, "trials")])
    done, pending = both.row(0, named=True), both.row(1, named=True)
    assert done["checkpoint_epochs"] == [1] and pending["lr_milestones"] == [1]
    assert pending["train_size"] is None and done["train_size"] == 64
    assert done["status"] == "completed" and pending["status"] == "pending" and pending["test_acc"] is None
    assert done["host"] and done["device"].startswith("cpu")
    assert done["started_at"] < done["finished_at"] and pending["started_at"] is None


@pytest.mark.parametrize("library", ["pandas", "pyarrow", "polars", "duckdb"])
def test_a_trials_row_round_trips_into_its_train_config(stores, library):
    root, _, _ = stores
    files = _files(root, "trials")
    if library == "pandas":
        rows = pd.concat([pd.read_parquet(f) for f in files]).to_dict("records")
    elif library == "pyarrow":
        rows = pa.concat_tables([pq.read_table(f) for f in files]).to_pylist()
    elif library == "polars":
        rows = pl.concat([pl.read_parquet(f) for f in files]).to_dicts()
    else:
        rows = duckdb.sql(f"SELECT * FROM read_parquet({files!r})").df().to_dict("records")
    assert [config_from_row(r).trial_id for r in rows] == [r["trial_id"] for r in rows]
    assert [config_from_row(r) for r in rows] == [TRAINED, PENDING]


def test_config_columns_encode_mode_settings_as_json():
    assert config_columns(PENDING)["mode_settings"] == '{"decay": 0.9, "start_epoch": 0}'
    assert config_columns(PENDING)["lr_milestones"] == [1]


def test_reader_tables(stores):
    root, _, _ = stores
    assert list(reader.trials(str(root), "a")["trial_id"]) == [TRAINED.trial_id]
    assert list(reader.epochs(str(root), "a")["epoch"]) == [1]
    assert list(reader.models(str(root), "a", TRAINED.trial_id)["model_id"]) == ["final"]
    assert list(reader.measures(str(root), "b")["status"]) == ["error"]
    assert reader.trial_config(str(root), "b", PENDING.trial_id) == PENDING


def test_load_model_returns_the_stored_weights_in_eval_mode(stores):
    root, a, _ = stores
    model = reader.load_model(str(root), "a", TRAINED.trial_id)
    assert not model.training
    stored = torch.load(root / "a" / "checkpoints" / TRAINED.trial_id / "final.pt", weights_only=True)
    assert all(torch.equal(stored[k], v) for k, v in model.model.state_dict().items())
    with torch.no_grad():
        x = torch.randint(0, 256, (2, *data_registry.get("digits").input_shape), dtype=torch.uint8)
        assert torch.equal(model(x), model(x)) and model(x).shape == (2, 10)


def test_load_model_errors_name_the_trial_and_model(stores):
    root, _, _ = stores
    from sweep.store import StoreError

    with pytest.raises(StoreError, match=r"^trial_id: 'nin-nope' is not a trial of"):
        reader.load_model(str(root), "a", "nin-nope")
    with pytest.raises(StoreError, match=r"^model_id: .* has no model 'ema' .*\(models: final\)"):
        reader.load_model(str(root), "a", TRAINED.trial_id, "ema")


def test_the_dataset_spec_the_reader_builds_from_matches_the_loaded_digits():
    from trainers import data

    dataset = data.load("digits", None, train_size=32, seed=0)
    spec = data_registry.get("digits")
    assert reader._shapes(TRAINED) == (spec.classes, spec.input_shape) == (dataset.num_classes, dataset.input_shape)


@pytest.mark.parametrize("family, settings, table", [
    ("el2n", {}, "el2n"),
    ("pruning_vs_perturbation", {"fractions": [1.0, 0.0]}, "pruning_curves"),
    ("flatness", {"subset": 32, "top_k": 3, "lanczos_steps": 6, "hutchinson_samples": 2, "power_max_iter": 5,
                  "eps_max": 1.0}, "hessian_eigenvalues"),
])
def test_measure_long_tables_are_written_with_their_schemas(stores, family, settings, table):
    """The tables the measure families really produce fit LONG_TABLE_SCHEMAS, written as
    the measures job writes them."""
    from measures import registry
    from sweep.measure_job import compute_model
    from sweep.store import LONG_TABLE_SCHEMAS

    root, a, _ = stores
    resolved = {family: registry.settings_for(family, settings)}
    ((_, rows, tables),) = compute_model(str(root), "a", TRAINED.to_dict(), "final", resolved)
    assert rows[0]["status"] == "ok", rows[0]["error"]
    frame = pd.DataFrame(tables[table])
    frame.insert(0, "model_id", "final")
    frame.insert(0, "trial_id", TRAINED.trial_id)
    a.write_table(frame, table, "t.parquet", schema=LONG_TABLE_SCHEMAS[table])
    assert pq.read_schema(root / "a" / table / "t.parquet").remove_metadata() == LONG_TABLE_SCHEMAS[table]


def test_a_frame_whose_columns_differ_from_the_schema_is_refused(tmp_path):
    from sweep.store import StoreError

    with pytest.raises(StoreError, match=r"columns \['extra', 'trial_id'\] differ from its schema's"):
        Store(str(tmp_path), "x").write_table(pd.DataFrame({"trial_id": ["t"], "extra": [1]}), "t.parquet",
                                              schema=pa.schema([("trial_id", pa.string())]))


def test_docs_list_every_column_of_the_trials_table():
    """docs/store.md's trials table names each column of TRIALS_SCHEMA (a new TrainConfig
    field gets a column by itself, and must be documented)."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "store.md").read_text()
    section = text[text.index("### `trials.parquet`"):text.index("### `epochs/")]
    documented = {name for line in section.splitlines() if line.startswith("| `")
                  for name in re.findall(r"`(\w+)`", line.split("|")[1])}
    assert documented == set(TRIALS_SCHEMA.names)

"""Reading an experiment back: its tables as DataFrames and any model of the zoo, ready to use.

    from sweep import reader
    trials = reader.trials("results", "demo")           # one row per trial (trials.parquet)
    epochs = reader.epochs("results", "demo")           # also models(), measures()
    el2n = reader.table("results", "demo", "el2n")      # any table folder, as a pyarrow Table
    model = reader.load_model("results", "demo", trials.trial_id[0])   # eval mode, on the CPU

Every table is read with each row exactly once, also while the store compacts it
(docs/store.md); ``reader.table`` hands it to duckdb or polars as it is:
``duckdb.sql("SELECT ... FROM t")`` with ``t = reader.table(...)``, ``polars.from_arrow(t)``.

``storage`` is a path or URI as for ``--storage`` (None: ``$GENZOO_STORAGE``, else
``./results``). Nothing here writes to the store or upgrades it.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import pandas as pd
import pyarrow as pa

from sweep.store import FINAL_MODEL, Store, StoreError, config_from_row
from trainers.config import TrainConfig
from trainers.data import registry as datasets


def trials(storage: Optional[str], experiment: str) -> pd.DataFrame:
    return Store(storage, experiment).trials()


def epochs(storage: Optional[str], experiment: str, trial_id: Optional[str] = None) -> pd.DataFrame:
    return Store(storage, experiment).epochs(trial_id)


def models(storage: Optional[str], experiment: str, trial_id: Optional[str] = None) -> pd.DataFrame:
    return Store(storage, experiment).models(trial_id)


def measures(storage: Optional[str], experiment: str) -> pd.DataFrame:
    return Store(storage, experiment).measures()


def table(storage: Optional[str], experiment: str, name: str) -> pa.Table:
    """Every row of the table folder ``name`` (``epochs``, ``models``, ``measures``, ``el2n``,
    ``events``, ...) as one pyarrow Table, each row once (empty when the folder has none)."""
    from sweep import compact

    found = compact.read_table(Store(storage, experiment), name)
    return found if found is not None else pa.table({})


def trial_config(storage: Optional[str], experiment: str, trial_id: str) -> TrainConfig:
    """The TrainConfig of a trial, from its row of trials.parquet."""
    table = trials(storage, experiment)
    rows = table[table["trial_id"] == trial_id]
    if not len(rows):
        raise StoreError(f"trial_id: {trial_id!r} is not a trial of {Store(storage, experiment).uri}")
    return config_from_row(rows.iloc[0].to_dict())


def _shapes(config: TrainConfig) -> Tuple[int, Tuple[int, ...]]:
    """(classes, one example's C×H×W) of the trial's dataset, from its spec, so that a model is
    built without loading its data."""
    spec = datasets.get(config.dataset)
    return spec.classes, spec.input_shape


def load_model(storage: Optional[str], experiment: str, trial_id: str, model_id: str = FINAL_MODEL, *,
               device: Any = "cpu", data_root: Optional[str] = None):
    """The model ``(trial_id, model_id)`` with its stored weights (read with
    ``weights_only=True``), on ``device``, in eval mode. Its classes and input shape come from
    the dataset's spec (``data_root`` is kept for callers; no data is loaded)."""
    from trainers import checkpoint
    from trainers.train import build_model

    store = Store(storage, experiment)
    config = trial_config(storage, experiment, trial_id)
    parts = store.checkpoint_parts(trial_id, checkpoint.model_name(model_id))
    if not store.exists(*parts):
        known = ", ".join(store.models(trial_id)["model_id"]) or "none yet"
        raise StoreError(f"model_id: {trial_id} has no model {model_id!r} in {store.uri} (models: {known})")
    state = checkpoint.load_bytes(store.read_bytes(*parts), f"{store.uri}/{'/'.join(parts)}", map_location=device)
    num_classes, input_shape = _shapes(config)
    model = build_model(config, num_classes, input_shape).to(device)
    model.load_state_dict(state)
    return model.eval()

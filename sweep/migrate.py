"""Upgrade a results store written by an older genzoo to the current layout, in place.

Version 1 (the first slice, before ``store_version`` was recorded in ``sweep.yaml``) hashed
every field of the trial config into the trial id, had no models table, and keyed measures
and long tables by trial only. Version 2:

- trial ids hash only the non-default identity fields (:meth:`TrainConfig.identity`): every
  file named by a trial id is rewritten under the new id (``epochs/``, ``checkpoints/``,
  ``measures/`` and the long tables such as ``el2n/``), with ``trial_id`` columns updated;
- ``models/<trial_id>.parquet`` gets one ``final`` row per finished trial, from its last
  epoch record (``step`` is unknown for such stores and left null; ``sparsity`` is 0: the
  first slice trained dense models only);
- measure and long-table rows get ``model_id = "final"``.

Version 3 (:data:`sweep.store.STORE_VERSION`) changes no file: its table folders may also hold
compacted parts (:mod:`sweep.compact`), so a version-2 store only has its ``store_version``
raised, and a genzoo of version 2 refuses a version-3 store instead of reading its parts twice.

Every stage that opens an experiment (``sweep run/resume/status``, ``measure``, ``analyze``)
calls :func:`upgrade` first. It is idempotent and crash-safe: each new file is written
(atomically) before its old one is deleted, and ``sweep.yaml`` is rewritten with the new
``store_version`` last, so a crash leaves a store that the next call finishes upgrading.
"""

from __future__ import annotations

import hashlib
import json
from typing import Callable

import yaml

from sweep.store import DIVERGED, FINAL_MODEL, MEASURE_SCHEMA, STORE_VERSION, Store
from trainers import checkpoint, yamlio
from trainers.config import TrainConfig

# The fields of TrainConfig in version 1, whose canonical JSON the version-1 id hashed.
V1_FIELDS = (
    "dataset", "train_size", "label_noise", "augment", "model", "width", "depth", "dropout",
    "optimizer", "lr", "momentum", "weight_decay", "batch_size", "epochs", "lr_schedule",
    "lr_decay_factor", "lr_milestones", "lr_decay_start", "lr_final", "seed", "checkpoint_epochs",
)
RESERVED = {"sweep.yaml", "trials.parquet", "analysis", "_tune", "_faults", "checkpoints", "epochs", "models"}


def store_version(store: Store) -> int:
    """The layout version of an experiment (0 when it has no ``sweep.yaml`` yet)."""
    if not store.exists("sweep.yaml"):
        return 0
    document = yamlio.load(store.read_text("sweep.yaml"), f"{store.uri}/sweep.yaml", allow_empty=True) or {}
    return int(document.get("store_version", 1))


def v1_trial_id(config: TrainConfig) -> str:
    """The id version 1 gave ``config``: sha256 of the canonical JSON of every v1 field."""
    values = {k: v for k, v in config.to_dict().items() if k in V1_FIELDS}
    canonical = json.dumps(values, sort_keys=True, separators=(",", ":"))
    return f"{config.model}-{hashlib.sha256(canonical.encode()).hexdigest()[:16]}"


def upgrade(store: Store, out: Callable[[str], None] = print) -> bool:
    """Bring ``store`` to :data:`STORE_VERSION`; True when something was upgraded."""
    version = store_version(store)
    if version in (0, STORE_VERSION):
        return False
    if version > STORE_VERSION:
        from sweep.config import SweepConfigError

        raise SweepConfigError(f"sweep.yaml: store_version {version} is newer than this genzoo ({STORE_VERSION}); "
                               "upgrade genzoo")
    if version == 1:
        _from_v1(store, out)
    else:  # 2 -> 3: the files stay; compacted parts may appear from now on (sweep/compact.py)
        out(f"[{store.experiment}] upgrading the store from layout version {version} to {STORE_VERSION} "
            "(no file changes; a genzoo older than this one will refuse it)")
    document = yamlio.load(store.read_text("sweep.yaml"), f"{store.uri}/sweep.yaml")
    document["store_version"] = STORE_VERSION
    store.write_text(yaml.safe_dump(document, sort_keys=False), "sweep.yaml")
    return True


def _from_v1(store: Store, out: Callable[[str], None]) -> None:
    from sweep.config import read_resolved_config

    config = read_resolved_config(store)
    ids = {v1_trial_id(c): c for c in config.trials()}
    out(f"[{store.experiment}] upgrading the store from layout version 1 to {STORE_VERSION} ({len(ids)} trials)")
    long_tables = [name for name in _folders(store) if name not in RESERVED and name != "measures"]
    for old, trial in ids.items():
        _move_trial(store, old, trial, long_tables)
    if store.exists("trials.parquet"):
        trials = store.read_table("trials.parquet")
        renamed = {old: c.trial_id for old, c in ids.items()}
        trials["trial_id"] = trials["trial_id"].map(lambda t: renamed.get(t, t))
        store.write_table(trials, "trials.parquet")


def _folders(store: Store):
    import pyarrow.fs as pafs

    infos = store.fs.get_file_info(pafs.FileSelector(store.root, allow_not_found=True))
    return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)


def _move_trial(store: Store, old: str, config: TrainConfig, long_tables) -> None:
    new = config.trial_id
    for name in store.list("checkpoints", old):
        store.write_bytes(store.read_bytes("checkpoints", old, name), "checkpoints", new, name)
        store.delete("checkpoints", old, name)
    if store.exists("checkpoints", old):
        store.fs.delete_dir(store.path("checkpoints", old))
    if store.exists("epochs", f"{old}.parquet"):
        epochs = store.read_table("epochs", f"{old}.parquet")
        store.write_epochs(new, epochs.drop(columns=["trial_id"]).to_dict("records"))
        store.delete("epochs", f"{old}.parquet")
    epochs = store.epochs(new)
    finished = (len(epochs) == config.epochs and epochs["status"].iloc[-1] != DIVERGED
                and store.exists(*store.checkpoint_parts(new, checkpoint.FINAL)))
    if finished and not store.exists("models", f"{new}.parquet"):
        last = epochs.iloc[-1]
        store.write_models(new, [{
            "model_id": FINAL_MODEL, "epoch": int(last["epoch"]), "step": None, "sparsity": 0.0,
            **{k: float(last[k]) for k in ("train_loss", "train_acc", "test_loss", "test_acc")},
        }])
    if store.exists("measures", f"{old}.parquet"):
        rows = store.read_table("measures", f"{old}.parquet")
        rows["model_id"] = FINAL_MODEL
        store.write_measures(new, rows.drop(columns=["trial_id"]).reindex(columns=MEASURE_SCHEMA.names[1:])
                             .to_dict("records"))
        store.delete("measures", f"{old}.parquet")
    for folder in long_tables:
        if store.exists(folder, f"{old}.parquet"):
            table = store.read_table(folder, f"{old}.parquet")
            table["trial_id"] = new
            if "model_id" not in table.columns:
                table.insert(1, "model_id", FINAL_MODEL)
            store.write_table(table, folder, f"{new}.parquet")
            store.delete(folder, f"{old}.parquet")

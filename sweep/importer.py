"""``genzoo import``: an existing zoo becomes a genzoo experiment that ``genzoo measure`` and
``genzoo analyze`` run on unchanged (docs/import.md).

Two sources:

- a **manifest** (``.csv`` or ``.parquet``): one row per model: its checkpoint ``file``, the
  ``model`` (a registry name) with its ``width``/``depth``/``dropout``, the ``dataset``, any other
  :class:`~trainers.config.TrainConfig` field, optionally ``init_file``, ``early_file`` with
  ``early_epoch``, and the final ``train_loss``/``train_acc``/``test_loss``/``test_acc`` (those not
  given are computed on import on the dataset's train and test splits). Columns named ``x_...``
  are kept in the provenance only.
- a **Ray Tune experiment folder** (one folder per trial with ``params.json``, ``result.json``
  and/or ``progress.csv`` and ``checkpoint_<iteration>/`` folders: the layout of the Model Zoos
  dataset), with a mapping (YAML) from its parameter and metric names to genzoo's.

Every model becomes one trial with one model, ``final``: ``checkpoints/<trial_id>/final.pt``
(the state dict as the registry model holds it, tensors only), ``init.pt`` and
``epoch_<k>.pt`` when the source has them, ``source.json`` (where it came from: the file, the
manifest row or the trial's ``params.json``, the file's sha256), ``epochs/<trial_id>.parquet``
(the source's per-epoch records; a manifest gives only the last epoch's metrics),
``models/<trial_id>.parquet`` last (its commit marker), then ``trials.parquet``. ``sweep.yaml``
holds the trials as a grid when they form one, else one variant per model.

Everything is read and checked before the first write (a bad row is one line naming it, the
field and what is allowed); a killed import is finished by running it again, and a re-import
of the same source rewrites nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import pandas as pd
import pyarrow as pa

from sweep import compact, provenance
from sweep.store import EPOCH_SCHEMA, FINAL_MODEL, MODEL_SCHEMA, STORE_VERSION, TRIALS_SCHEMA, Store, StoreError
from sweep.trial import IMPORTED, is_complete
from trainers import checkpoint, yamlio
from trainers.config import ConfigError, TrainConfig
from trainers.status import COMPLETED

METRICS = ("train_loss", "train_acc", "test_loss", "test_acc")
TRAIN_FIELDS = tuple(TrainConfig.__dataclass_fields__)
# Manifest columns besides the TrainConfig fields and the metrics.
FILE_COLUMNS = ("file", "init_file", "early_file", "early_epoch")
EXTRA_PREFIX = "x_"
# Where a state dict may sit inside a checkpoint that holds more than one (tried in order).
STATE_KEYS = ("state_dict", "model_state_dict", "model", "net", "network")
# The Tune mapping's keys (docs/import.md).
MAPPING_KEYS = ("params", "fixed", "values", "metrics", "epoch", "checkpoint_file", "state_key", "strip_prefix",
                "init_checkpoint", "early_epoch", "extensions")
TUNE_METRICS = ("minibatch_loss", *METRICS, "lr", "seconds")
TUNE_METRIC_DEFAULTS = {"seconds": "time_this_iter_s"}


class ZooImportError(ValueError):
    """A source that cannot be imported: one line naming the row (or trial folder), the field
    and what is allowed."""


@dataclass
class Entry:
    """One model to import, read and checked. Its checkpoint files are read again when it is
    written (a zoo of 50,000 models is not held in memory)."""

    where: str
    config: TrainConfig
    files: Dict[str, Tuple[Path, str]]  # store file name (final.pt, init.pt, epoch_<k>.pt) -> (source file, label)
    records: List[Dict[str, Any]]  # epoch records as the source has them (metrics may be NaN)
    given: Dict[str, float]  # final metrics the source gives
    source: Dict[str, Any] = field(default_factory=dict)
    options: Dict[str, Any] = field(default_factory=dict)  # state_key, strip_prefix

    def weights(self, models: "_Models") -> Dict[str, bytes]:
        """The store's bytes of each checkpoint file."""
        return {name: _weights(path, self.where, label, self.config, models, **self.options)[0]
                for name, (path, label) in self.files.items()}


# ---------------------------------------------------------------------------------------------
# values and checkpoints

def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def _plain(value: Any) -> Any:
    """A cell as a plain Python value (numpy scalars and arrays unwrapped, NaN as None)."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _field_value(name: str, value: Any, where: str) -> Any:
    """A manifest cell as the TrainConfig field ``name`` takes it (CSV gives 8.0 for an int of
    a column with blanks, and text for lists and mappings)."""
    kind = TrainConfig.__dataclass_fields__[name].type
    value = _plain(value)
    if isinstance(value, str) and ("Tuple" in str(kind) or name == "mode_settings"):
        try:
            value = yamlio.parse_value(value, source=f"{where}: {name}")
        except yamlio.YamlError as exc:
            raise ZooImportError(str(exc)) from None
    if "int" in str(kind) and isinstance(value, float) and value.is_integer():
        value = int(value)
    if "bool" in str(kind) and isinstance(value, str) and value.lower() in ("true", "false"):
        value = value.lower() == "true"
    return value


def _metric(name: str, value: Any, where: str) -> Optional[float]:
    value = _plain(value)
    if _missing(value):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ZooImportError(f"{where}: {name}: got {value!r}, allowed: a number")
    value = float(value)
    if name.endswith("_acc") and not 0.0 <= value <= 1.0:  # (lr, seconds: any number)
        raise ZooImportError(f"{where}: {name}: got {value!r}, allowed: a fraction in [0, 1] (not a percentage)")
    if name.endswith("_loss") and not (value >= 0 or math.isinf(value)):
        raise ZooImportError(f"{where}: {name}: got {value!r}, allowed: a loss >= 0")
    return value


def _config(values: Dict[str, Any], where: str) -> TrainConfig:
    from trainers import catalog
    from trainers.data import registry as datasets
    from trainers.models import registry as models

    for name in ("model", "dataset"):
        if _missing(values.get(name)):
            raise ZooImportError(f"{where}: {name}: missing, allowed: "
                                 + ", ".join(sorted(models.names()) if name == "model" else sorted(datasets.names())))
    try:
        known = models.known(values["model"])
    except models.ModelError as exc:
        raise ZooImportError(f"{where}: {exc}") from None
    if not known:
        raise ZooImportError(f"{where}: model: got {values['model']!r}, allowed: {', '.join(sorted(models.names()))}, or a "
                             "package.module:function factory (trainers/models/factory.py)")
    if values["dataset"] not in datasets.names():
        raise ZooImportError(f"{where}: dataset: got {values['dataset']!r}, allowed: {', '.join(datasets.names())}")
    try:
        config = TrainConfig.from_dict(values)
        config.check_schedule()
    except ConfigError as exc:
        raise ZooImportError(f"{where}: {exc}") from None
    except TypeError as exc:
        raise ZooImportError(f"{where}: {exc}") from None
    spec, info = models.get(config.model), catalog.dataset_info(config.dataset)
    for name, unset in (("width", None), ("depth", None), ("dropout", 0.0)):
        if getattr(config, name) != unset and name not in spec.hyperparameters:
            raise ZooImportError(f"{where}: {name}: got {getattr(config, name)!r}, but model {config.model} has no "
                                 f"{name} (it takes {', '.join(spec.hyperparameters) or 'none'}); allowed: {unset}")
    if not spec.takes_shape(info.shape):
        raise ZooImportError(f"{where}: model: {config.model} does not take {config.dataset}'s "
                             f"{'x'.join(map(str, info.shape))} images")
    if config.train_size is not None and config.train_size > info.train:
        raise ZooImportError(f"{where}: train_size: got {config.train_size}, allowed: at most {info.train}")
    count = catalog.parameter_count(config.model, info.classes, width=config.width, depth=config.depth,
                                    input_shape=info.shape)
    if count > catalog.MAX_PARAMETERS:
        raise ZooImportError(f"{where}: width: {config.model} of width {config.width} has {count:.3g} parameters; "
                             f"allowed: at most {catalog.MAX_PARAMETERS:,}")
    return config


class _Models:
    """One built registry model per architecture, to check and normalize state dicts."""

    def __init__(self) -> None:
        self.cache: Dict[tuple, Any] = {}

    def get(self, config: TrainConfig):
        from trainers import catalog
        from trainers.train import build_model

        key = (config.model, config.width, config.depth, config.dropout, config.dataset)
        if key not in self.cache:
            info = catalog.dataset_info(config.dataset)
            self.cache[key] = build_model(config, info.classes, info.shape)
        return self.cache[key]


def _find_state(obj: Any, state_key: Optional[str]) -> Optional[Mapping[str, Any]]:
    import torch

    def is_state(value: Any) -> bool:
        return isinstance(value, Mapping) and bool(value) and all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())

    if state_key is not None:
        value = obj.get(state_key) if isinstance(obj, Mapping) else None
        return value if is_state(value) else None
    if is_state(obj):
        return obj
    if isinstance(obj, Mapping):
        for key in STATE_KEYS:
            if is_state(obj.get(key)):
                return obj[key]
    return None


def _weights(path: Path, where: str, what: str, config: TrainConfig, models: _Models, *,
             state_key: Optional[str] = None, strip_prefix: str = "") -> Tuple[bytes, str]:
    """The checkpoint at ``path`` as genzoo stores it (the registry model's state dict, tensors
    only) and the sha256 of the file; read with ``weights_only=True`` and loaded strictly into
    the model of ``config``."""
    if not path.is_file():
        raise ZooImportError(f"{where}: {what}: {path} not found")
    data = path.read_bytes()
    try:
        obj = checkpoint.load_bytes(data, str(path))
    except checkpoint.CheckpointError as exc:
        raise ZooImportError(f"{where}: {what}: {exc}") from None
    state = _find_state(obj, state_key)
    if state is None:
        keys = f" (its keys: {', '.join(map(str, list(obj)[:8]))})" if isinstance(obj, Mapping) else ""
        raise ZooImportError(f"{where}: {what}: {path} holds no state dict{keys}; allowed: a state dict of tensors, "
                             f"or one under {' or '.join(state_key and [state_key] or STATE_KEYS)}")
    if strip_prefix:
        state = {(k[len(strip_prefix):] if k.startswith(strip_prefix) else k): v for k, v in state.items()}
    model = models.get(config)
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shapes that differ
        detail = [line.strip() for line in str(exc).splitlines() if "size mismatch" in line][:1]
        raise ZooImportError(f"{where}: {what}: {path} does not fit model {_describe(config)}: "
                             f"{(detail or [str(exc).splitlines()[0]])[0]}") from None
    if result.missing_keys or result.unexpected_keys:
        parts = []
        if result.missing_keys:
            parts.append(f"missing {', '.join(result.missing_keys[:4])}")
        if result.unexpected_keys:
            parts.append(f"unexpected {', '.join(result.unexpected_keys[:4])}")
        raise ZooImportError(f"{where}: {what}: {path} does not fit model {_describe(config)} ({'; '.join(parts)}); "
                             "allowed: the registry model's state dict (strip a prefix with strip_prefix)")
    return checkpoint.to_bytes(checkpoint.cpu_state_dict(model.state_dict())), hashlib.sha256(data).hexdigest()


def _describe(config: TrainConfig) -> str:
    hparams = [f"{n} {getattr(config, n)}" for n in ("width", "depth", "dropout") if getattr(config, n)]
    return config.model + (f" ({', '.join(hparams)})" if hparams else "")


def _progress(out: Callable[[str], None], name: str, done: int, total: int) -> None:
    if done % 1000 == 0 and done < total:
        out(f"[import] {name}: {done}/{total} models read and checked")


def _last_records(config: TrainConfig) -> List[Dict[str, Any]]:
    """A manifest model's epoch records: one per epoch trained, the last with its final metrics;
    what the manifest does not give is NaN (unknown)."""
    nan = math.nan
    records = []
    for epoch in range(1, config.epochs + 1):
        record = {"epoch": epoch, "lr": nan, "minibatch_loss": nan, "seconds": nan, "images_per_second": nan,
                  "status": COMPLETED, "host": None, "device": None, "finished_at": None}
        record.update({m: nan for m in METRICS})
        records.append(record)
    return records


# ---------------------------------------------------------------------------------------------
# sources

def read_manifest(path: Path, out: Callable[[str], None] = print) -> List[Entry]:
    """Every row of a manifest, checked (:class:`ZooImportError` on the first bad one)."""
    name = path.name
    try:
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, skipinitialspace=True)
    except Exception as exc:  # pandas raises many types for an unreadable file
        raise ZooImportError(f"{name}: cannot read the manifest ({type(exc).__name__}: "
                             f"{(str(exc).splitlines() or [''])[0]})") from None
    allowed = ("file", "model", "dataset", *(f for f in TRAIN_FIELDS if f not in ("model", "dataset")),
               *METRICS, *FILE_COLUMNS[1:])
    for column in frame.columns:
        if column not in allowed and not str(column).startswith(EXTRA_PREFIX):
            raise ZooImportError(f"{name}: column {column!r}: unknown, allowed: {', '.join(allowed)} "
                                 f"(or {EXTRA_PREFIX}... for provenance only)")
    if "file" not in frame.columns:
        raise ZooImportError(f"{name}: column 'file': missing (each row's checkpoint file)")
    if not len(frame):
        raise ZooImportError(f"{name}: no rows, allowed: one row per model")
    models = _Models()
    entries = []
    for index, row in enumerate(frame.to_dict("records"), start=1):
        where = f"{name} row {index}"
        record = {k: _plain(v) for k, v in row.items()}
        values = {k: _field_value(k, v, where) for k, v in row.items() if k in TRAIN_FIELDS and not _missing(_plain(v))}
        values.setdefault("epochs", 1)  # unknown: one record, holding the final metrics (docs/import.md)
        early_epoch = record.get("early_epoch")
        if not _missing(record.get("early_file")):
            if not isinstance(early_epoch, (int, float)) or isinstance(early_epoch, bool) or \
                    float(early_epoch) != int(early_epoch) or early_epoch < 1:
                raise ZooImportError(f"{where}: early_epoch: got {early_epoch!r}, allowed: the epoch of early_file "
                                     "(an integer >= 1)")
            values["checkpoint_epochs"] = [int(early_epoch)]
        elif not _missing(early_epoch):
            raise ZooImportError(f"{where}: early_epoch: got {early_epoch!r} without early_file, allowed: empty")
        config = _config(values, where)
        given = {m: v for m in METRICS if m in row and (v := _metric(m, row[m], where)) is not None}
        files = {}
        for column in ("file", "init_file", "early_file"):
            if _missing(record.get(column)):
                if column == "file":
                    raise ZooImportError(f"{where}: file: missing, allowed: the model's checkpoint file")
                continue
            file = Path(str(record[column])).expanduser()
            files[column] = file if file.is_absolute() else (path.parent / file)
        sha = {column: _weights(file, where, column, config, models)[1] for column, file in files.items()}
        source = {"source": "manifest", "manifest": str(path.resolve()), "row": index,
                  "path": str(files["file"].resolve()), "sha256": sha["file"],
                  **({"init_path": str(files["init_file"].resolve())} if "init_file" in files else {}),
                  **({"early_path": str(files["early_file"].resolve())} if "early_file" in files else {}),
                  "record": record}
        names = {"file": checkpoint.FINAL, "init_file": checkpoint.INIT}
        if "early_file" in files:
            names["early_file"] = checkpoint.early_name(config.checkpoint_epochs[0])
        entries.append(Entry(where, config, {names[c]: (f, c) for c, f in files.items()},
                             _last_records(config), given, source))
        _progress(out, name, index, len(frame))
    return entries


def read_mapping(path: Optional[Path]) -> Dict[str, Any]:
    """The Tune mapping (docs/import.md), checked; None: the defaults."""
    if path is None:
        return {}
    try:
        document = yamlio.load(path.read_text(), str(path), allow_empty=True) or {}
    except OSError as exc:
        raise ZooImportError(f"--mapping: cannot read {path} ({exc.strerror})") from None
    except yamlio.YamlError as exc:
        raise ZooImportError(str(exc)) from None
    if not isinstance(document, dict):
        raise ZooImportError(f"{path.name}: allowed: a mapping of {', '.join(MAPPING_KEYS)}")
    for key, value in document.items():
        if key not in MAPPING_KEYS:
            raise ZooImportError(f"{path.name}: {key}: unknown field, allowed: {', '.join(MAPPING_KEYS)}")
        if key in ("params", "fixed", "values", "metrics") and not isinstance(value, dict):
            raise ZooImportError(f"{path.name}: {key}: got {value!r}, allowed: a mapping")
    for name in (*document.get("params", {}), *document.get("fixed", {}), *document.get("values", {})):
        if name not in TRAIN_FIELDS:
            raise ZooImportError(f"{path.name}: {name}: not a genzoo hyperparameter, "
                                 f"allowed: {', '.join(TRAIN_FIELDS)}")
    for name in document.get("metrics", {}):
        if name not in TUNE_METRICS:
            raise ZooImportError(f"{path.name}: metrics.{name}: unknown, allowed: {', '.join(TUNE_METRICS)}")
    return document


def _lookup(params: Mapping[str, Any], key: str) -> Any:
    """``params[key]``, or the nested value of a dotted ``key`` (``optim.lr``); KeyError if none."""
    if key in params:
        return params[key]
    node: Any = params
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def _tune_results(folder: Path, where: str) -> pd.DataFrame:
    result, progress = folder / "result.json", folder / "progress.csv"
    if result.is_file() and result.stat().st_size:
        rows = []
        for number, line in enumerate(result.read_text().splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    raise ZooImportError(f"{where}: result.json line {number}: not JSON") from None
        return pd.DataFrame(rows)
    if progress.is_file():
        return pd.read_csv(progress)
    raise ZooImportError(f"{where}: no result.json or progress.csv")


def _checkpoint_file(folder: Path, name: Optional[str], where: str) -> Path:
    if name is not None:
        return folder / name
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    weights = [p for p in files if p.name in ("checkpoints", "model.pt", "checkpoint.pt", "state_dict.pt")] or \
        [p for p in files if p.suffix in (".pt", ".pth")] or files
    if len(weights) != 1:
        raise ZooImportError(f"{where}: {folder.name}: {len(weights)} candidate files "
                             f"({', '.join(p.name for p in weights[:4])}); "
                             "allowed: one, or name it with checkpoint_file")
    return weights[0]


def _checkpoint_folders(folder: Path, results: pd.DataFrame, epoch_key: str) -> Dict[int, Path]:
    """A trial's checkpoint folders by the epoch whose weights they hold.

    Ray Tune from 2.7 on numbers them in the order they were saved (``checkpoint_000000`` is the
    first checkpoint reported, after epoch 1, not the weights before training) and names each in
    the result row that reported it (``checkpoint_dir_name``): the row's epoch is the folder's
    (rows naming a folder Ray has since deleted, under ``num_to_keep``, are passed over).
    Ray Tune 1.x (the Model Zoos) and 2.0-2.6 name them by the training iteration
    (``checkpoint_<iteration>``, ``checkpoint_000000`` then being the weights before training when
    the trainable saved them)."""
    named = results["checkpoint_dir_name"] if "checkpoint_dir_name" in results.columns else None
    if named is not None and named.map(lambda v: isinstance(v, str)).any():
        folders: Dict[int, Path] = {}
        for epoch, name in zip(results[epoch_key], named):
            # A folder that is gone was deleted by Ray (CheckpointConfig's num_to_keep keeps the latest few).
            if isinstance(name, str) and pd.notna(epoch) and (folder / name).is_dir():
                folders[int(epoch)] = folder / name
        return folders
    folders = {}
    for sub in folder.glob("checkpoint_*"):
        suffix = sub.name.split("_", 1)[1]
        if sub.is_dir() and suffix.isdigit():
            folders[int(suffix)] = sub
    return folders


def read_tune(path: Path, mapping: Mapping[str, Any], out: Callable[[str], None] = print) -> List[Entry]:
    """Every trial folder of a Ray Tune experiment folder, checked."""
    if not path.is_dir():
        raise ZooImportError(f"{path}: not a folder")
    folders = sorted(p.parent for p in path.glob("*/params.json"))
    if not folders:
        raise ZooImportError(f"{path}: no trial folder (a folder with params.json) in it")
    params_map = dict(mapping.get("params") or {})
    fixed = dict(mapping.get("fixed") or {})
    values_map = dict(mapping.get("values") or {})
    metrics_map = {m: TUNE_METRIC_DEFAULTS.get(m, m) for m in TUNE_METRICS}
    metrics_map.update(mapping.get("metrics") or {})
    epoch_key = mapping.get("epoch", "training_iteration")
    init_iteration = mapping.get("init_checkpoint", 0)
    early_epoch = mapping.get("early_epoch")
    models = _Models()
    entries = []
    for folder in folders:
        where = f"trial {folder.name}"
        try:
            params = json.loads((folder / "params.json").read_text())
        except ValueError:
            raise ZooImportError(f"{where}: params.json: not JSON") from None
        values: Dict[str, Any] = dict(fixed)
        for name, key in params_map.items():
            try:
                value = _lookup(params, str(key))
            except KeyError:
                raise ZooImportError(f"{where}: params.json has no {key!r} (mapped to {name}); "
                                     f"its keys: {', '.join(list(params)[:12])}") from None
            table = values_map.get(name) or {}
            values[name] = table.get(value, value) if isinstance(value, (str, int, float, bool)) else value
        results = _tune_results(folder, where)
        if epoch_key not in results.columns:
            raise ZooImportError(f"{where}: the results have no {epoch_key!r} column (the epoch; set epoch:)")
        checkpoints = _checkpoint_folders(folder, results, epoch_key)
        results = results[results[epoch_key] >= 1].drop_duplicates(epoch_key, keep="last").sort_values(epoch_key)
        trained = [k for k in checkpoints if k >= 1]
        if not trained:
            raise ZooImportError(f"{where}: no checkpoint folder of an epoch >= 1 (checkpoint_<iteration>/, or one "
                                 "that a result row names in checkpoint_dir_name)")
        last = max(trained)
        results = results[results[epoch_key] <= last]
        if [int(e) for e in results[epoch_key]] != list(range(1, last + 1)):
            raise ZooImportError(f"{where}: the results hold epochs {[int(e) for e in results[epoch_key]][:6]}..., "
                                 f"allowed: every epoch 1..{last} of {checkpoints[last].name}")
        values.setdefault("epochs", last)
        if int(values["epochs"]) != last:
            raise ZooImportError(f"{where}: epochs: got {values['epochs']!r}, but its last checkpoint is "
                                 f"{checkpoints[last].name} (epoch {last})")
        if early_epoch is not None:
            values["checkpoint_epochs"] = [int(early_epoch)]
        config = _config(values, where)
        options = dict(state_key=mapping.get("state_key"), strip_prefix=mapping.get("strip_prefix") or "")
        name = mapping.get("checkpoint_file")
        final_file = _checkpoint_file(checkpoints[last], name, where)
        sha = _weights(final_file, where, checkpoints[last].name, config, models, **options)[1]
        files = {checkpoint.FINAL: (final_file, checkpoints[last].name)}
        source: Dict[str, Any] = {"source": "tune", "experiment": str(path.resolve()), "trial": folder.name,
                                  "path": str(final_file.resolve()), "sha256": sha}
        if init_iteration is not None and int(init_iteration) in checkpoints:
            init_file = _checkpoint_file(checkpoints[int(init_iteration)], name, where)
            files[checkpoint.INIT] = (init_file, checkpoints[int(init_iteration)].name)
            _weights(init_file, where, files[checkpoint.INIT][1], config, models, **options)
            source["init_path"] = str(init_file.resolve())
        if early_epoch is not None:
            if int(early_epoch) not in checkpoints:
                raise ZooImportError(f"{where}: early_epoch: got {early_epoch}, but there is no checkpoint of "
                                     f"epoch {int(early_epoch)} (its checkpoints: epochs {sorted(checkpoints)})")
            early_file = _checkpoint_file(checkpoints[int(early_epoch)], name, where)
            files[checkpoint.early_name(int(early_epoch))] = (early_file, checkpoints[int(early_epoch)].name)
            _weights(early_file, where, checkpoints[int(early_epoch)].name, config, models, **options)
            source["early_path"] = str(early_file.resolve())
        source["record"] = params
        records = []
        for row in results.to_dict("records"):
            epoch = int(row[epoch_key])
            record: Dict[str, Any] = {"epoch": epoch, "status": COMPLETED, "images_per_second": math.nan,
                                      "host": row.get("hostname") if isinstance(row.get("hostname"), str) else None,
                                      "device": None, "finished_at": None}
            for metric in TUNE_METRICS:
                column = metrics_map[metric]
                value = _metric(metric, row.get(column), f"{where} epoch {epoch}: {column}")
                record[metric] = math.nan if value is None else value
            timestamp = _plain(row.get("timestamp"))
            if isinstance(timestamp, (int, float)) and not isinstance(timestamp, bool) and math.isfinite(timestamp):
                record["finished_at"] = pd.Timestamp(int(timestamp), unit="s", tz="UTC")
            records.append(record)
        given = {m: records[-1][m] for m in METRICS if not math.isnan(records[-1][m])}
        entries.append(Entry(where, config, files, records, given, source, options))
        _progress(out, path.name, len(entries), len(folders))
    return entries


# ---------------------------------------------------------------------------------------------
# the experiment

def sweep_document(experiment: str, configs: Sequence[TrainConfig], extensions: Sequence[str] = ()) -> Dict[str, Any]:
    """A sweep file whose trials are exactly ``configs``: a grid over the fields that vary when
    the configs are every combination of their values, else one variant per config."""
    dicts = [c.to_dict() for c in configs]
    names = list(dicts[0])
    distinct = {n: list(dict.fromkeys(json.dumps(d[n], sort_keys=True) for d in dicts)) for n in names}
    varying = [n for n in names if len(distinct[n]) > 1]
    fixed = {n: dicts[0][n] for n in names if n not in varying and n != "seed"}
    document: Dict[str, Any] = {"experiment": experiment, "train": fixed}
    if extensions:
        document["extensions"] = list(extensions)
    gridable = all(n != "mode_settings" and not isinstance(dicts[0][n], list) for n in varying)
    if gridable and math.prod(len(distinct[n]) for n in varying) == len(configs):
        document["grid"] = {n: [json.loads(v) for v in distinct[n]] for n in varying if n != "seed"}
        document["seeds"] = [json.loads(v) for v in distinct["seed"]]
        return document
    document["seeds"] = [dicts[0]["seed"]]
    # A list value (checkpoint_epochs) is a one-value axis of its variant.
    document["variants"] = [{n: [d[n]] if isinstance(d[n], list) else d[n] for n in varying} or {"seed": d["seed"]}
                            for d in dicts]
    return document


def _table(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """What :meth:`Store.write_table` writes of ``frame``, as an Arrow table (to compare)."""
    empty = [n for n in schema.names if len(frame) and frame[n].isna().all()]
    if empty:
        frame = frame.assign(**{n: pd.Series([None] * len(frame), index=frame.index, dtype=object) for n in empty})
    return pa.Table.from_pandas(frame, schema=schema, preserve_index=False)


def _same_rows(stored: pd.DataFrame, rows: List[Dict[str, Any]], schema: pa.Schema, trial_id: str) -> bool:
    new = pd.DataFrame([{**r, "trial_id": trial_id} for r in rows], columns=schema.names)
    try:
        return _table(stored[schema.names], schema).equals(_table(new, schema))
    except (KeyError, pa.ArrowException):
        return False


class _Writer:
    """Writes one file only when its bytes differ from the store's (a re-import rewrites nothing)."""

    def __init__(self, store: Store) -> None:
        self.store, self.written = store, 0

    def bytes(self, data: bytes, *parts: str) -> None:
        if self.store.exists(*parts) and self.store.read_bytes(*parts) == data:
            return
        self.store.write_bytes(data, *parts)
        self.written += 1


def _metrics_of(store_model, final: bytes, dataset, device) -> Dict[str, float]:
    from trainers import data

    model = store_model
    model.load_state_dict(checkpoint.load_bytes(final, "final.pt"))
    model.to(device)
    train_loss, train_acc = data.evaluate(model, dataset.train_images, dataset.train_labels, mean=dataset.mean,
                                          std=dataset.std, device=device)
    test_loss, test_acc = data.evaluate(model, dataset.test_images, dataset.test_labels, mean=dataset.mean,
                                        std=dataset.std, device=device)
    model.to("cpu")
    return {"train_loss": train_loss, "train_acc": train_acc, "test_loss": test_loss, "test_acc": test_acc}


def _source_json(entry: Entry) -> bytes:
    return (json.dumps(entry.source, sort_keys=True, indent=1, default=str) + "\n").encode()


def import_trial(store: Store, entry: Entry, writer: _Writer, models: _Models, datasets: Dict[tuple, Any],
                 data_root: Optional[str], device) -> bool:
    """Write one model into the store in the commit order of a trained trial (checkpoints, its
    source, epochs, models last: the marker); False when it is there already, unchanged."""
    config, trial_id = entry.config, entry.config.trial_id
    files = {**entry.weights(models), IMPORTED: _source_json(entry)}
    stored = set(store.list("checkpoints", trial_id))
    if set(files) <= stored and is_complete(store, config) and all(
            store.read_bytes(*store.checkpoint_parts(trial_id, n)) == data for n, data in files.items()):
        return False
    for name in (checkpoint.INIT, *(n for n in files if n.startswith("epoch_")), checkpoint.FINAL, IMPORTED):
        if name in files:
            writer.bytes(files[name], *store.checkpoint_parts(trial_id, name))
    metrics = dict(entry.given)
    if len(metrics) < len(METRICS):
        from trainers import data

        key = (config.dataset, config.train_size, config.label_noise,
               config.seed if (config.train_size is not None or config.label_noise) else 0)
        if key not in datasets:
            datasets[key] = data.load(config.dataset, data_root, train_size=config.train_size,
                                      label_noise=config.label_noise, seed=config.seed)
        computed = _metrics_of(models.get(config), files[checkpoint.FINAL], datasets[key], device)
        metrics = {**computed, **metrics}
    records = [dict(r) for r in entry.records]
    records[-1].update(metrics)
    model_row = _model_row(config, files[checkpoint.FINAL], metrics, models)
    if not _same_rows(store.epochs(trial_id), records, EPOCH_SCHEMA, trial_id):
        store.write_epochs(trial_id, records)
        writer.written += 1
    if not _same_rows(store.models(trial_id), [model_row], MODEL_SCHEMA, trial_id):
        store.write_models(trial_id, [model_row])
        writer.written += 1
    return True


def _model_row(config: TrainConfig, final: bytes, metrics: Mapping[str, float], models: _Models) -> Dict[str, Any]:
    from trainers import pruning

    state = checkpoint.load_bytes(final, "final.pt")
    names = [name for name, _ in pruning.prunable_parameters(models.get(config))]
    total = sum(state[n].numel() for n in names)
    zeros = sum(int((state[n] == 0).sum()) for n in names)
    return {"model_id": FINAL_MODEL, "epoch": config.epochs, "step": None, "weights": total,
            "sparsity": zeros / total if total else 0.0, "stability": None, "reached_target": None,
            **{m: float(metrics[m]) for m in METRICS}}


def _sweep_yaml(config, source: Path, kind: str, mapping_path: Optional[Path], imported_at: str) -> str:
    import yaml

    document = config.to_dict()
    document["store_version"] = STORE_VERSION
    document["versions"] = provenance.versions()
    block: Dict[str, Any] = {"genzoo": provenance._version("genzoo")}
    commit = provenance.git_commit()
    if commit:
        block["git_commit"] = commit
    block.update({"imported_from": str(source.resolve()), "import_source": kind, "host": provenance.host(),
                  "started_at": imported_at, "finished_at": imported_at})
    if mapping_path is not None:
        block["import_mapping"] = str(mapping_path.resolve())
    document["provenance"] = block
    return yaml.safe_dump(document, sort_keys=False)


def _all_imported(store: Store) -> bool:
    """Whether every trial folder of the store holds a ``source.json`` (an imported experiment
    whose sweep.yaml a ``genzoo sweep resume`` rewrote)."""
    from sweep.trials_table import snapshot

    files = snapshot(store).files
    return bool(files) and all(IMPORTED in names for names in files.values())


def run(source: str, *, experiment: Optional[str] = None, storage: Optional[str] = None,
        mapping: Optional[str] = None, data_root: Optional[str] = None, device: Optional[str] = None,
        out: Callable[[str], None] = print) -> Dict[str, int]:
    """Import ``source`` (a manifest file or a Ray Tune experiment folder) as ``experiment``;
    returns counts: ``imported`` (written now), ``unchanged`` (already in the store)."""
    import torch

    from sweep import config as sweep_config
    from sweep.trials_table import TrialsTable

    path = Path(source).expanduser()
    if not path.exists():
        raise ZooImportError(f"source: {source} not found, allowed: a manifest (.csv, .parquet) or a Ray Tune "
                             "experiment folder")
    mapping_path = Path(mapping).expanduser() if mapping else None
    if path.is_dir():
        kind, options = "tune", read_mapping(mapping_path)
    else:
        if mapping_path is not None:
            raise ZooImportError("--mapping: only for a Ray Tune experiment folder (a manifest names genzoo's fields)")
        if path.suffix not in (".csv", ".parquet"):
            raise ZooImportError(f"source: {path.name}: allowed: a .csv or .parquet manifest, or a Ray Tune folder")
        kind, options = "manifest", {}
    extensions = list(options.get("extensions") or [])
    if extensions:
        from sweep import extensions as extension_modules

        try:
            extension_modules.load(extension_modules.parse(extensions))
        except extension_modules.ExtensionError as exc:
            raise ZooImportError(str(exc)) from None
    experiment = experiment or (path.name if path.is_dir() else path.stem)
    store = Store(storage, experiment)  # a bad name or an unreachable store fails before the reading
    entries = read_tune(path, options, out) if kind == "tune" else read_manifest(path, out)
    seen: Dict[str, str] = {}
    for entry in entries:
        trial_id = entry.config.trial_id
        if trial_id in seen:
            raise ZooImportError(f"{entry.where}: the same trial as {seen[trial_id]} (every hyperparameter equal); "
                                 "allowed: models that differ in a genzoo hyperparameter (a seed column, say)")
        seen[trial_id] = entry.where
    try:
        config = sweep_config.parse(sweep_document(experiment, [e.config for e in entries], extensions))
    except sweep_config.SweepConfigError as exc:
        raise ZooImportError(f"{path.name}: {exc}") from None
    if {c.trial_id for c in config.trials()} != set(seen) or len(config.trials()) != len(seen):
        raise AssertionError("the sweep written does not hold exactly the imported trials")
    if store.exists("sweep.yaml") and "imported_from" not in provenance.recorded(store) and not _all_imported(store):
        raise ZooImportError(f"experiment: {store.uri} holds a sweep that genzoo import did not make; "
                             "allowed: a new experiment name (--experiment)")
    store.check_writable()
    # Nothing was written before here. sweep.yaml first (its trials), then each model, then trials.parquet.
    previous = None
    if store.exists("sweep.yaml"):
        previous = sweep_config.read_resolved_config(store).to_dict()
    if previous != config.to_dict():
        store.write_text(_sweep_yaml(config, path, kind, mapping_path, provenance.now().isoformat()), "sweep.yaml")
    writer = _Writer(store)
    models, datasets = _Models(), {}
    run_device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    counts = {"imported": 0, "unchanged": 0}
    for number, entry in enumerate(entries, start=1):
        done = import_trial(store, entry, writer, models, datasets, data_root, run_device)
        counts["imported" if done else "unchanged"] += 1
        if number % 100 == 0:
            out(f"[import {experiment}] {number}/{len(entries)} models")
    table = TrialsTable(store, config.trials())
    if not (store.exists("trials.parquet") and
            _table(store.trials()[TRIALS_SCHEMA.names], TRIALS_SCHEMA).equals(_table(table.frame(), TRIALS_SCHEMA))):
        table.write()
    statuses = table.counts()
    if statuses.get(COMPLETED, 0) != len(entries):
        raise StoreError(f"{store.uri}: {len(entries) - statuses.get(COMPLETED, 0)} imported trials are not complete "
                         "after the import; run it again")
    # As a launch does at its end: a large zoo's per-trial epochs and models files into a few parts.
    done = compact.compact_trial_tables(store, set(seen))
    if done:
        out(f"[import {experiment}] compacted {compact.summary(done)}")
    out(f"[import {experiment}] {len(entries)} models from {path} ({kind}): {counts['imported']} imported, "
        f"{counts['unchanged']} unchanged; next: genzoo measure {experiment}"
        + (f" --storage {store.storage}" if storage else ""))
    return counts

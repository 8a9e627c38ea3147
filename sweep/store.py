"""The results store: one folder (local path or URI such as ``s3://bucket/prefix``) per
experiment, read and written through ``pyarrow.fs`` so that every stage works the same on a
laptop and on a cluster with object storage.

This module owns the store's contract: every path of the layout, the Parquet schemas, the
status words and the layout version (``docs/store.md`` documents them for users).

Layout (``<storage>/<experiment>/``)::

    sweep.yaml                    resolved sweep config + package versions (provenance) +
                                  store_version
    trials.parquet                one row per trial (see TRIALS_SCHEMA): trial_id, every
                                  TrainConfig field, status, final metrics, host, device, times
    epochs/<trial_id>.parquet     one row per epoch (see EPOCH_SCHEMA)
    models/<trial_id>.parquet     one row per model the trial produced (see MODEL_SCHEMA):
                                  ``final`` for plain training, one per level or event otherwise
    checkpoints/<trial_id>/       init.pt, epoch_<k>.pt, <model_id>.pt (state_dicts only), and
                                  state.pt (resumable state) while the trial is unfinished
    measures/<trial_id>.parquet   long format, one row per (model, measure) (see MEASURE_SCHEMA)
    <table>/<trial_id>.parquet    per-trial long tables of a measure (el2n, pruning_curves, ...)
    analysis/                     tables, figures, report.md
    _tune/run-<n>/                Ray Tune's own files, one folder per launch

Per-example and per-fraction tables live in their own top-level folders rather than inside
``measures/`` so that ``pd.read_parquet("<exp>/measures")`` reads one homogeneous table.

Every write goes to a temporary name starting with ``.`` (which Parquet dataset readers skip)
and is then moved over the final name, so a crash never leaves half a file, and rewriting a
trial's file replaces its rows rather than appending to them.
"""

from __future__ import annotations

import dataclasses
import errno
import io
import json
import math
import os
import threading
import typing
import urllib.parse
import uuid
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from trainers.config import TrainConfig
from trainers.status import COMPLETED, DIVERGED

DEFAULT_STORAGE = "./results"
# How long a remote store may take to answer before a command gives up on it.
ENV_STORAGE_TIMEOUT = "GENZOO_STORAGE_TIMEOUT"
DEFAULT_STORAGE_TIMEOUT_S = 20.0

# Version of the layout. 1: the first slice (trial ids hashed every field, no models table,
# measures keyed by trial only); 2: stable ids, models/, model_id in measures; 3: a table
# folder may hold compacted parts besides its per-trial files (sweep/compact.py), which a
# genzoo of version 2 would read twice and take for missing trials. A store of an older
# version is upgraded in place by :func:`sweep.migrate.upgrade`.
STORE_VERSION = 3

# The status vocabulary, one definition for the whole orchestration layer. A trial is
# finished when COMPLETED or DIVERGED (the trainer's outcome words, trainers.status), else
# not started, partly trained, training now, or failed in its last attempt.
PENDING = "pending"
INCOMPLETE = "incomplete"
RUNNING = "running"
ERROR = "error"
FINISHED = (COMPLETED, DIVERGED)
# A measure row: computed, or failed (with the error message); ERROR is shared.
OK = "ok"

# The model of a plain training run; its checkpoint is checkpoints/<trial_id>/final.pt.
FINAL_MODEL = "final"

EPOCH_SCHEMA = pa.schema([
    ("trial_id", pa.string()),
    ("epoch", pa.int64()),
    ("lr", pa.float64()),
    ("minibatch_loss", pa.float64()),
    ("train_loss", pa.float64()),
    ("train_acc", pa.float64()),
    ("test_loss", pa.float64()),
    ("test_acc", pa.float64()),
    ("seconds", pa.float64()),
    ("images_per_second", pa.float64()),
    ("status", pa.string()),
    # Where and when the epoch ran (sweep.provenance); null in stores written before them.
    ("host", pa.string()),
    ("device", pa.string()),
    ("finished_at", pa.timestamp("us", tz="UTC")),
])

MODEL_SCHEMA = pa.schema([
    ("trial_id", pa.string()),
    ("model_id", pa.string()),
    ("epoch", pa.int64()),
    ("step", pa.int64()),
    ("weights", pa.int64()),
    ("sparsity", pa.float64()),
    # prune_during_training: mean stability over the pruning events (null for other modes).
    ("stability", pa.float64()),
    # stop_at_train_loss: whether the run ended by reaching it (then ``epoch`` is the epoch it
    # stopped at) or at its ``epochs`` cap; null for runs without a target.
    ("reached_target", pa.bool_()),
    ("train_loss", pa.float64()),
    ("train_acc", pa.float64()),
    ("test_loss", pa.float64()),
    ("test_acc", pa.float64()),
])

MEASURE_SCHEMA = pa.schema([
    ("trial_id", pa.string()),
    ("model_id", pa.string()),
    ("family", pa.string()),
    ("measure", pa.string()),
    ("value", pa.float64()),
    ("seconds", pa.float64()),
    ("status", pa.string()),
    ("error", pa.string()),
    ("settings", pa.string()),
])


# The long tables of measure families (MeasureOutput.tables), one file per model.
LONG_TABLE_SCHEMAS = {
    "el2n": pa.schema([
        ("trial_id", pa.string()), ("model_id", pa.string()), ("index", pa.int64()), ("score", pa.float64()),
        ("noisy", pa.bool_()), ("loss", pa.float64()),
    ]),
    "pruning_curves": pa.schema([
        ("trial_id", pa.string()), ("model_id", pa.string()), ("kept_fraction", pa.float64()),
        ("intervention", pa.string()), ("split", pa.string()), ("loss", pa.float64()), ("accuracy", pa.float64()),
        ("change_norm", pa.float64()),
    ]),
    "hessian_eigenvalues": pa.schema([
        ("trial_id", pa.string()), ("model_id", pa.string()), ("rank", pa.int64()), ("eigenvalue", pa.float64()),
    ]),
    # measures/spectral.py: one row per analysed conv/linear layer (WeightWatcher's per-layer details).
    "spectral_layers": pa.schema([
        ("trial_id", pa.string()), ("model_id", pa.string()), ("layer", pa.string()), ("layer_index", pa.int64()),
        ("kind", pa.string()), ("n", pa.int64()), ("m", pa.int64()), ("rf", pa.int64()), ("num_evals", pa.int64()),
        ("lambda_max", pa.float64()), ("alpha", pa.float64()), ("alpha_weighted", pa.float64()),
        ("log_alpha_norm", pa.float64()), ("log_norm", pa.float64()), ("log_spectral_norm", pa.float64()),
        ("stable_rank", pa.float64()), ("xmin", pa.float64()), ("ks_distance", pa.float64()),
        ("alpha_sigma", pa.float64()), ("num_pl_spikes", pa.int64()), ("fit", pa.string()),
        ("num_spikes", pa.float64()), ("mp_softrank", pa.float64()),
    ]),
}

# trials.parquet: one column per TrainConfig field, typed from the field's annotation
# (tuples as lists, ``mode_settings`` as JSON text: its keys depend on the mode), then the
# trial's status, final metrics, where and when it ran, and its last error.
TRIAL_STATUS_COLUMNS = (
    ("status", pa.string()),
    ("epochs_done", pa.int64()),
    ("epochs_total", pa.int64()),
    # stop_at_train_loss: whether the trial stopped by reaching it (at epoch ``epochs_done``;
    # ``epochs_total`` is then the cap); null without a target or before the trial finished.
    ("reached_target", pa.bool_()),
    ("minibatch_loss", pa.float64()),
    ("train_loss", pa.float64()),
    ("train_acc", pa.float64()),
    ("test_loss", pa.float64()),
    ("test_acc", pa.float64()),
    ("host", pa.string()),
    ("device", pa.string()),
    ("started_at", pa.timestamp("us", tz="UTC")),
    ("finished_at", pa.timestamp("us", tz="UTC")),
    ("error", pa.string()),
)


def _arrow_type(name: str, hint: Any) -> pa.DataType:
    """The Arrow type of a TrainConfig field from its annotation (Optional[X] is X, nullable)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union and type(None) in args:
        (hint,) = [a for a in args if a is not type(None)]
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return pa.string()  # JSON text (mode_settings)
    if origin is tuple:
        return pa.list_(_arrow_type(name, args[0]))
    types = {bool: pa.bool_(), int: pa.int64(), float: pa.float64(), str: pa.string()}
    if hint not in types:
        raise TypeError(f"TrainConfig.{name}: no Arrow type for {hint!r}; add one in sweep/store.py")
    return types[hint]


def _trials_schema() -> pa.Schema:
    hints = typing.get_type_hints(TrainConfig)
    config = [(f.name, _arrow_type(f.name, hints[f.name])) for f in dataclasses.fields(TrainConfig)]
    return pa.schema([("trial_id", pa.string()), *config, *TRIAL_STATUS_COLUMNS])


TRIALS_SCHEMA = _trials_schema()
CONFIG_COLUMNS = tuple(f.name for f in dataclasses.fields(TrainConfig))


def config_columns(config: TrainConfig) -> Dict[str, Any]:
    """A config's values for the TrainConfig columns of trials.parquet."""
    values = config.to_dict()
    for name in CONFIG_COLUMNS:
        if TRIALS_SCHEMA.field(name).type == pa.string() and not isinstance(values[name], (str, type(None))):
            values[name] = json.dumps(values[name], sort_keys=True)
    return values


def config_from_row(row: Mapping[str, Any]) -> TrainConfig:
    """The TrainConfig of one row of trials.parquet (a dict or a pandas row), whatever the
    reader turned the Arrow types into (NaN for a null int, numpy arrays for lists)."""
    values = {}
    for name in CONFIG_COLUMNS:
        if name not in row:
            continue
        value, kind = row[name], TRIALS_SCHEMA.field(name).type
        if pa.types.is_list(kind):
            value = [int(v) for v in value] if value is not None else []
        elif value is None or (isinstance(value, float) and math.isnan(value)):
            value = None
        elif pa.types.is_integer(kind):
            value = int(value)
        elif pa.types.is_floating(kind):
            value = float(value)
        elif pa.types.is_boolean(kind):
            value = bool(value)
        elif name == "mode_settings" and isinstance(value, str):
            value = json.loads(value)
        values[name] = value
    return TrainConfig.from_dict(values)


class StoreError(ValueError):
    """A store that cannot be opened, read or written; the message names the path."""


def _fsync_dir(folder: Path) -> None:
    """fsync a folder (its entries); a file system that cannot (EINVAL) is left as it is."""
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def _make_dirs_durably(folder: Path) -> None:
    """``mkdir -p``, each folder made fsynced into its parent."""
    if folder.is_dir():
        return
    _make_dirs_durably(folder.parent)
    try:
        folder.mkdir()
    except FileExistsError:
        return
    _fsync_dir(folder.parent)


def _write_durably(data: bytes, tmp: Path, final: Path) -> None:
    """The local write of :meth:`Store.write_bytes`: the data fsynced, renamed, the folder fsynced."""
    _make_dirs_durably(final.parent)
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, final)
    _fsync_dir(final.parent)


def resolve_storage(storage: Optional[str]) -> str:
    """The storage location: the argument, else ``GENZOO_STORAGE``, else ``./results``.

    Local paths are made absolute (Ray Tune fails later on relative ones); URIs are kept.
    """
    storage = storage or os.environ.get("GENZOO_STORAGE") or DEFAULT_STORAGE
    if "://" in storage:
        return storage.rstrip("/")
    return str(Path(storage).expanduser().resolve())


def storage_timeout() -> float:
    """Seconds a remote store may take to answer its first request (``GENZOO_STORAGE_TIMEOUT``,
    default :data:`DEFAULT_STORAGE_TIMEOUT_S`)."""
    raw = os.environ.get(ENV_STORAGE_TIMEOUT, "")
    if not raw.strip():
        return DEFAULT_STORAGE_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise StoreError(f"{ENV_STORAGE_TIMEOUT}: got {raw!r}, allowed: a number of seconds > 0")
    return value


S3_URI_OPTIONS = ("region", "scheme", "endpoint_override", "allow_bucket_creation", "allow_bucket_deletion")


def _open_remote(uri: str, timeout: float):
    """The filesystem and root path of a remote store, after one request to it made with
    timeouts of ``timeout`` seconds and no retries, so that an unreachable store fails here
    rather than in the middle of a sweep (the filesystem returned keeps the client's default
    timeouts and retries)."""
    parsed = urllib.parse.urlsplit(uri)
    try:
        if parsed.scheme == "s3":
            options: Dict[str, Any] = dict(urllib.parse.parse_qsl(parsed.query))
            for key in options:
                if key not in S3_URI_OPTIONS:
                    raise StoreError(f"storage: {uri}: unknown option {key!r}, allowed: {', '.join(S3_URI_OPTIONS)}")
                if key.startswith("allow_"):
                    options[key] = options[key].lower() in ("1", "true", "yes")
            if "region" not in options and "endpoint_override" not in options:
                options["region"] = (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
                                     or pafs.resolve_s3_region(parsed.netloc))
            root = (parsed.netloc + parsed.path).rstrip("/")
            probe = pafs.S3FileSystem(connect_timeout=timeout, request_timeout=timeout,
                                      retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=1), **options)
            probe.get_file_info(root)
            return pafs.S3FileSystem(**options), root
        if parsed.scheme in ("gs", "gcs"):
            limit = f"retry_limit_seconds={max(1, int(timeout))}"
            probe, root = pafs.FileSystem.from_uri(uri + ("&" if parsed.query else "?") + limit)
            probe.get_file_info(root)
            return pafs.FileSystem.from_uri(uri)
        fs, root = pafs.FileSystem.from_uri(uri)
        fs.get_file_info(root)
        return fs, root
    except (pa.ArrowException, OSError, ValueError) as exc:
        text = str(exc).strip()
        raise StoreError(f"storage: cannot open {uri} ({text.splitlines()[0] if text else type(exc).__name__})") from None


def _within_timeout(uri: str, timeout: float, open_store):
    """``open_store()``, or a :class:`StoreError` naming the storage when it takes longer than
    ``timeout``: a backstop for what the client's own timeouts (:func:`_open_remote`) do not
    bound, such as credential lookups. The call runs in a daemon thread that is abandoned on
    timeout (the command then exits with its one-line error)."""
    outcome: Dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = open_store()
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="genzoo-storage-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise StoreError(f"storage: {uri} did not answer within {timeout:g} s "
                         f"(unreachable? the limit is ${ENV_STORAGE_TIMEOUT})")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


class Store:
    """One experiment's folder in the results store."""

    def __init__(self, storage: Optional[str], experiment: str):
        if not experiment or "/" in experiment or experiment.startswith((".", "_")) or not experiment.isprintable():
            raise StoreError(f"experiment: {experiment!r} is not a valid name (letters, digits, -, _; no / or control characters)")
        if storage is not None and not storage.isprintable():
            raise StoreError(f"storage: {storage!r} has control characters")
        if storage is not None and not storage.strip():
            raise StoreError(f"storage: got {storage!r}, allowed: a path or a URI (an empty one is not ./results)")
        self.storage = resolve_storage(storage)
        self.experiment = experiment
        # A URI's options (s3://bucket/zoo?endpoint_override=host:port&scheme=http) stay at its end.
        base, _, query = self.storage.partition("?")
        self.uri = f"{base}/{experiment}" + (f"?{query}" if query else "")
        if "://" not in base:
            self.fs, self.root = pafs.LocalFileSystem(), str(Path(base) / experiment)
            return
        timeout = storage_timeout()
        self.fs, self.root = _within_timeout(self.uri, timeout, lambda: _open_remote(self.uri, timeout))

    # paths -----------------------------------------------------------------------------
    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def local_path(self, *parts: str) -> Optional[Path]:
        """The path on this machine's disk, or None for remote storage."""
        if isinstance(self.fs, pafs.LocalFileSystem):
            return Path(self.path(*parts))
        return None

    def exists(self, *parts: str) -> bool:
        return self.fs.get_file_info(self.path(*parts)).type != pafs.FileType.NotFound

    def list(self, *parts: str, suffix: str = "") -> list:
        """Names of the files directly in a folder (hidden temporaries excluded), sorted."""
        info = self.fs.get_file_info(pafs.FileSelector(self.path(*parts), allow_not_found=True))
        return sorted(
            i.base_name for i in info
            if i.type == pafs.FileType.File and not i.base_name.startswith(".") and i.base_name.endswith(suffix)
        )

    # writing ---------------------------------------------------------------------------
    def check_writable(self) -> None:
        """Write and remove a probe file in the experiment folder; a folder made for the probe
        is removed with it, so a command refused later leaves no trace (the first real write
        makes the folder again)."""
        probe = f".write-probe-{uuid.uuid4().hex}"
        made = not self.exists()
        try:
            self.fs.create_dir(self.root, recursive=True)
            with self.fs.open_output_stream(self.path(probe)) as handle:
                handle.write(b"ok")
            self.fs.delete_file(self.path(probe))
            if made:
                self.fs.delete_dir(self.root)
        except (OSError, pa.ArrowException) as exc:
            raise StoreError(f"storage: {self.uri} is not writable ({str(exc).splitlines()[0]})") from exc

    def write_bytes(self, data: bytes, *parts: str) -> None:
        """Write ``data`` to a temporary name and rename it over ``parts``. On a local disk the
        file is fsynced before the rename and its folder after it (and a folder made for it,
        in its parent), so that after a power loss a file is either absent or whole, and a
        commit marker (``state.pt``, a measure row) is never on disk before the files written
        ahead of it (docs/store.md gives the cost)."""
        final = self.path(*parts)
        parent, _, name = final.rpartition("/")
        tmp = f"{parent}/.{name}.tmp-{uuid.uuid4().hex}"
        try:
            if self.local_path() is not None:
                _write_durably(data, Path(tmp), Path(final))
                return
            self.fs.create_dir(parent, recursive=True)
            with self.fs.open_output_stream(tmp) as handle:
                handle.write(data)
            self.fs.move(tmp, final)
        except BaseException as exc:
            try:
                self.fs.delete_file(tmp)
            except OSError:
                pass
            if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:  # a full disk: one line naming the store
                raise StoreError(f"storage: {self.uri} is full (no space left on device writing {'/'.join(parts)}); "
                                 "free space, then run the command again (it resumes)") from None
            raise

    def write_text(self, text: str, *parts: str) -> None:
        self.write_bytes(text.encode(), *parts)

    def write_table(self, frame: pd.DataFrame, *parts: str, schema: Optional[pa.Schema] = None) -> None:
        if schema is not None:
            if set(frame.columns) != set(schema.names):
                raise StoreError(f"{'/'.join(parts)}: columns {sorted(frame.columns)} differ from its schema's "
                                 f"{sorted(schema.names)} (sweep/store.py)")
            # A column with no value at all (NaN for a missing key) takes its schema's type.
            empty = [n for n in schema.names if n in frame.columns and len(frame) and frame[n].isna().all()]
            if empty:
                frame = frame.assign(**{n: pd.Series([None] * len(frame), index=frame.index, dtype=object)
                                        for n in empty})
        table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
        sink = io.BytesIO()
        pq.write_table(table, sink)
        self.write_bytes(sink.getvalue(), *parts)

    def upload(self, local: str | os.PathLike, *parts: str) -> None:
        self.write_bytes(Path(local).read_bytes(), *parts)

    def download(self, local: str | os.PathLike, *parts: str) -> Path:
        local = Path(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(self.read_bytes(*parts))
        return local

    def delete(self, *parts: str) -> None:
        if self.exists(*parts):
            self.fs.delete_file(self.path(*parts))

    # reading ---------------------------------------------------------------------------
    def read_bytes(self, *parts: str) -> bytes:
        try:
            with self.fs.open_input_stream(self.path(*parts)) as handle:
                return handle.read()
        except FileNotFoundError as exc:
            raise StoreError(f"{self.uri}/{'/'.join(parts)}: not found") from exc

    def read_text(self, *parts: str) -> str:
        return self.read_bytes(*parts).decode()

    def read_table(self, *parts: str) -> pd.DataFrame:
        try:
            return pq.read_table(io.BytesIO(self.read_bytes(*parts))).to_pandas()
        except pa.ArrowInvalid as exc:
            raise StoreError(f"{self.uri}/{'/'.join(parts)}: not a Parquet file ({exc})") from exc

    def read_folder(self, folder: str, schema: Optional[pa.Schema] = None) -> pd.DataFrame:
        """Every row of a table folder as one DataFrame (empty if none): its per-trial files and
        its compacted parts, each row exactly once, ordered by file (:mod:`sweep.compact`)."""
        from sweep import compact

        table = compact.read_table(self, folder)
        if table is None or not table.num_rows:
            if schema is not None:
                return schema.empty_table().to_pandas()
            return pd.DataFrame() if table is None else table.to_pandas()
        return table.to_pandas()

    def read_source(self, folder: str, name: str) -> Optional[pd.DataFrame]:
        """The rows of one per-trial file of a table folder (``<trial_id>.parquet``), whether
        it is a file or compacted into a part; None when the store has neither."""
        from sweep import compact

        table = compact.read_source(self, folder, name)
        return None if table is None else table.to_pandas()

    # the experiment's tables -------------------------------------------------------------
    def trials(self) -> pd.DataFrame:
        if not self.exists("trials.parquet"):
            return TRIALS_SCHEMA.empty_table().to_pandas()
        return self.read_table("trials.parquet")

    def epochs(self, trial_id: Optional[str] = None) -> pd.DataFrame:
        """The per-epoch records: of one trial, or of every trial."""
        return self._per_trial("epochs", EPOCH_SCHEMA, trial_id)

    def measures(self) -> pd.DataFrame:
        return self.read_folder("measures", MEASURE_SCHEMA)

    def models(self, trial_id: Optional[str] = None) -> pd.DataFrame:
        """The models table: of one trial, or of every trial (empty when none is written)."""
        return self._per_trial("models", MODEL_SCHEMA, trial_id)

    def _per_trial(self, folder: str, schema: pa.Schema, trial_id: Optional[str]) -> pd.DataFrame:
        if trial_id is None:
            return self.read_folder(folder, schema)
        frame = self.read_source(folder, f"{trial_id}.parquet")
        return schema.empty_table().to_pandas() if frame is None else frame

    def write_epochs(self, trial_id: str, records: Iterable[dict]) -> None:
        self._write_rows("epochs", trial_id, records, EPOCH_SCHEMA)

    def write_models(self, trial_id: str, rows: Iterable[dict]) -> None:
        self._write_rows("models", trial_id, rows, MODEL_SCHEMA)

    def write_measures(self, trial_id: str, rows: Iterable[dict]) -> None:
        self._write_rows("measures", trial_id, rows, MEASURE_SCHEMA)

    def _write_rows(self, folder: str, trial_id: str, rows: Iterable[dict], schema: pa.Schema) -> None:
        frame = pd.DataFrame([{**r, "trial_id": trial_id} for r in rows], columns=schema.names)
        self.write_table(frame, folder, f"{trial_id}.parquet", schema=schema)

    def checkpoint_parts(self, trial_id: str, name: str) -> tuple:
        return ("checkpoints", trial_id, name)

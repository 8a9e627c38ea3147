"""Compacted tables: the per-trial files of a table folder merged into a few part files.

Every per-trial table (``epochs/``, ``models/``, ``measures/``, the long tables ``el2n/``,
``pruning_curves/``, ``hessian_eigenvalues/``, a mode's ``events/``) is committed one file per
trial (or per model), ``<trial_id>.parquet`` or ``<trial_id>.<model_id>.parquet``: the unit of
commit, rewritten whole and atomically. Tens of thousands of small files read slowly (pandas,
duckdb and S3 all pay per file), so finished trials' files are *compacted*: their rows are
copied into a *part*, ``part-<generation>-<8 hex>.parquet`` in the same folder, and the files
are deleted. A part holds the rows of many *sources* (the per-trial file names), each source's
rows contiguous and in the file's order; its sidecar ``_part-<generation>-<8 hex>.json``
(written before it, deleted after it; Parquet readers skip names starting with ``_``) lists
``[source, rows]`` in order. Parts are never changed once written; each compaction writes a
new one with a higher generation.

Which rows a reader takes (:func:`read_table`, and ``Store.read_folder`` / ``Store.epochs`` ...
through it), from one listing of the folder:

- a source present as a per-trial file is read from that file (a trial rewritten after its
  rows were compacted supersedes them: the file is always the newest copy);
- otherwise from the part of highest generation that holds it;
- rows are returned ordered by source name (the order of an uncompacted folder), so every
  row is read exactly once, whatever instant of a compaction the listing saw.

A compaction of a folder (:func:`compact_folder`):

1. lists the folder and reads the footers of its parts;
2. reads the eligible per-trial files (finished trials) and the parts it merges (parts that
   hold a copy superseded by a file or by a newer part, and small parts, so that the folder
   keeps a few parts of increasing size), and writes their live rows as one new part
   (atomically: a temporary name starting with ``.``, then a rename), then the folder's index
   of parts ``_parts.json`` (which one trial's reads use instead of a listing);
3. deletes the merged parts, then the compacted files that are unchanged since step 1.

A kill at any point loses nothing: until the new part exists every row is where it was;
after that every row is in the new part or in a copy that wins over it, and the leftovers of
steps 3 are shadowed (a reader reads each source once) and removed by the next compaction.
Readers list the folder again after their reads and start again when a part appeared that
holds a source the first listing lacked, so a listing that raced a compaction (a deleted file
missed, its new part not yet seen) is never used; a file deleted between the listing and its
read starts them again too.

A raw ``pd.read_parquet(<exp>/epochs)`` (or duckdb, polars) reads every file of the folder:
it is exactly-once at rest, once a compaction has finished and no compacted trial has been
rewritten since (genzoo compacts at the end of each launch and measure job, which restores
this). During a compaction, between steps 2 and 3, it reads the moved rows twice, and a
trial rewritten after compaction is read twice (its file and its old part rows) until the
next compaction. ``docs/store.md`` gives the one-liners that are exactly-once at every
instant (through :mod:`sweep.reader`).

Compactions are run by the driver (at the start of a launch, when finished trials' files
were left uncompacted, and at its end: the trial tables), by the measure job at its end (its
tables), and by ``genzoo compact``. A folder is compacted once it holds at least
``GENZOO_COMPACT_MIN_FILES`` (default 32) eligible files, or whenever a part holds a
superseded copy. Two compactions of one folder must not run at once, nor a compaction while a
writer of the same trials' files runs (the launch and the measure job compact only after
their own writers are done, and only finished trials' files).
"""

from __future__ import annotations

import io
import json
import os
import re
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

PART_RE = re.compile(r"^part-(\d{6,})-([0-9a-f]{8})\.parquet$")
SOURCES_KEY = b"genzoo.sources"  # the sources in a part's footer (parts written before sidecars)
# The folder's parts as of its last compaction (a name starting with "_": Parquet readers skip it).
INDEX = "_parts.json"
ENV_MIN_FILES = "GENZOO_COMPACT_MIN_FILES"
DEFAULT_MIN_FILES = 32
# A new part absorbs every existing part with at most as many rows as it has gathered so far
# (a binary counter: each row is rewritten O(log n) times, the folder keeps O(log n) parts);
# past MAX_PARTS parts, all are merged.
MAX_PARTS = 16
ROW_GROUP_ROWS = 32_768
# Folders of an experiment that are not tables of per-trial files.
NOT_TABLES = ("checkpoints", "analysis", "_tune", "_faults")
# Threads that read or delete a folder's files (I/O latency, on S3 and on local disks alike: a
# local delete that frees written-back blocks waits ~2 ms for the disk here).
THREADS = 16
# Reads that start again because a compaction changed the folder under them.
READ_ATTEMPTS = 50


class ReadRace(RuntimeError):
    """A folder changed under a reader more often than ``READ_ATTEMPTS`` times in a row."""


def is_part(name: str) -> bool:
    return PART_RE.match(name) is not None


def generation(name: str) -> int:
    return int(PART_RE.match(name).group(1))


def source_trial(source: str) -> str:
    """The trial of a per-trial file name: ``<trial_id>.parquet``, ``<trial_id>.<model_id>.parquet``."""
    return source.split(".", 1)[0]


def min_files() -> int:
    raw = os.environ.get(ENV_MIN_FILES, "").strip()
    if not raw:
        return DEFAULT_MIN_FILES
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 1:
        from sweep.store import StoreError

        raise StoreError(f"{ENV_MIN_FILES}: got {raw!r}, allowed: an integer >= 1")
    return value


@dataclass(frozen=True)
class Entry:
    name: str
    size: int
    mtime_ns: Optional[int]


@dataclass
class Listing:
    """One listing of a table folder: its per-trial files and its parts (by name)."""

    files: Dict[str, Entry] = field(default_factory=dict)
    parts: Dict[str, Entry] = field(default_factory=dict)
    temporaries: List[str] = field(default_factory=list)  # a killed compaction's hidden part or index files
    sidecars: List[str] = field(default_factory=list)  # every part's list of sources, _part-....json


def sidecar(part: str) -> str:
    """The file of a part's sources: ``_part-<gen>-<hex>.json`` (Parquet readers skip ``_``)."""
    return f"_{part[:-len('.parquet')]}.json"


def list_folder(store, folder: str) -> Listing:
    infos = store.fs.get_file_info(pafs.FileSelector(store.path(folder), allow_not_found=True))
    listing = Listing()
    for info in infos:
        if info.type != pafs.FileType.File:
            continue
        name = info.base_name
        if name.startswith((".part-", f".{INDEX}", "._part-")) and ".tmp-" in name:
            listing.temporaries.append(name)
        if name.startswith("_part-") and name.endswith(".json"):
            listing.sidecars.append(name)
        if name.startswith((".", "_")) or not name.endswith(".parquet"):
            continue
        entry = Entry(name, info.size, info.mtime_ns)
        (listing.parts if is_part(name) else listing.files)[name] = entry
    return listing


# A part's sources never change (a part is written once under a new name): cached per process.
_SOURCES: Dict[Tuple[str, str, str], List[Tuple[str, int]]] = {}
_SOURCES_LOCK = threading.Lock()


def _sources_from_metadata(metadata, where: str) -> List[Tuple[str, int]]:
    raw = (metadata or {}).get(SOURCES_KEY)
    if raw is None:
        from sweep.store import StoreError

        raise StoreError(f"{where}: a part file without its {SOURCES_KEY.decode()} footer")
    return [(str(name), int(rows)) for name, rows in json.loads(raw)]


def part_sources(store, folder: str, name: str) -> List[Tuple[str, int]]:
    """``[(source, rows)]`` of a part, in the order of its rows: its sidecar (read once per
    process: a part and its sidecar never change), else its footer. Not in the part's own
    metadata: Arrow keeps schema metadata in every read of the file, and a list of 100,000
    sources made each of a part's row-group reads parse megabytes (quadratic)."""
    from sweep.store import StoreError

    key = (store.uri, folder, name)
    with _SOURCES_LOCK:
        if key in _SOURCES:
            return _SOURCES[key]
    try:
        raw = store.read_bytes(folder, sidecar(name))
        sources = [(str(source), int(rows)) for source, rows in json.loads(raw)]
    except StoreError as exc:
        if not _gone(exc):
            raise
        try:  # a part written before sidecars; a part deleted meanwhile raises FileNotFoundError
            with store.fs.open_input_file(store.path(folder, name)) as handle:
                schema = pq.read_schema(handle)
        except pa.ArrowInvalid as exc:
            raise StoreError(f"{store.uri}/{folder}/{name}: not a Parquet file ({exc})") from exc
        sources = _sources_from_metadata(schema.metadata, f"{store.uri}/{folder}/{name}")
    except ValueError as exc:
        raise StoreError(f"{store.uri}/{folder}/{sidecar(name)}: not a list of sources ({exc})") from exc
    with _SOURCES_LOCK:
        _SOURCES[key] = sources
    return sources


def holders(listing: Listing, sources: Dict[str, List[Tuple[str, int]]]) -> Dict[str, Optional[str]]:
    """Where each source's live copy is: None for its per-trial file, else the part of highest
    generation that holds it."""
    live: Dict[str, Optional[str]] = {name: None for name in listing.files}
    for part in sorted(listing.parts, key=generation, reverse=True):
        for source, _ in sources[part]:
            live.setdefault(source, part)
    return live


def _read_file_table(store, folder: str, name: str, threads: bool = False) -> pa.Table:
    from sweep.store import StoreError

    data = store.read_bytes(folder, name)  # FileNotFoundError -> StoreError "not found"
    try:
        # ParquetFile rather than read_table (a dataset per call): 3x faster on small files.
        return pq.ParquetFile(pa.BufferReader(data)).read(use_threads=threads)
    except pa.ArrowInvalid as exc:
        raise StoreError(f"{store.uri}/{folder}/{name}: not a Parquet file ({exc})") from exc


def _read_part(store, folder: str, name: str) -> Tuple[pa.Table, List[Tuple[str, int]]]:
    from sweep.store import StoreError

    data = store.read_bytes(folder, name)
    try:
        parquet = pq.ParquetFile(pa.BufferReader(data))
        # Row group by row group: ParquetFile.read() of a whole large part is six times slower
        # (1.8 million measure rows: 2.2 s against 0.4 s).
        groups = [parquet.read_row_group(i) for i in range(parquet.metadata.num_row_groups)]
    except pa.ArrowInvalid as exc:
        raise StoreError(f"{store.uri}/{folder}/{name}: not a Parquet file ({exc})") from exc
    table = pa.concat_tables(groups) if groups else parquet.schema_arrow.empty_table()
    return table.replace_schema_metadata(None), part_sources(store, folder, name)


def _parallel(store, function, items: Sequence) -> list:
    """``function`` over ``items``, in threads when there are many (or the store is remote)."""
    if len(items) < (2 if store.local_path() is None else 16):
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(THREADS, len(items))) as pool:
        return list(pool.map(function, items))


def _gone(exc: BaseException) -> bool:
    """A file listed a moment ago is not there any more (a compaction moved it)."""
    from sweep.store import StoreError

    return isinstance(exc, FileNotFoundError) or (isinstance(exc, StoreError) and str(exc).endswith(": not found"))


def _concat(tables: Sequence[pa.Table]) -> pa.Table:
    tables = [t.replace_schema_metadata(None) for t in tables]
    return pa.concat_tables(tables, promote_options="permissive")


def _assemble(pieces: List[Tuple[str, pa.Table, int, int]]) -> Optional[pa.Table]:
    """One table of ``pieces`` (source, table, first row, row count), ordered by source."""
    if not pieces:
        return None
    tables: List[pa.Table] = []
    index: Dict[int, int] = {}
    offsets: List[int] = []
    total = 0
    for _, table, _, _ in pieces:
        if id(table) not in index:
            index[id(table)] = len(tables)
            tables.append(table)
            offsets.append(total)
            total += table.num_rows
    combined = _concat(tables)
    order = sorted(range(len(pieces)), key=lambda i: pieces[i][0])
    starts = np.array([offsets[index[id(pieces[i][1])]] + pieces[i][2] for i in order], dtype=np.int64)
    counts = np.array([pieces[i][3] for i in order], dtype=np.int64)
    if counts.sum() == total and np.array_equal(starts, np.concatenate([[0], np.cumsum(counts)[:-1]])):
        return combined
    positions = np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts) + np.arange(counts.sum())
    return combined.take(pa.array(positions, type=pa.int64()))


def read_table(store, folder: str) -> Optional[pa.Table]:
    """Every live row of a table folder (module docstring), ordered by source; None when the
    folder holds no table file."""
    for _ in range(READ_ATTEMPTS):
        listing = list_folder(store, folder)
        try:
            parts = dict(zip(listing.parts, _parallel(store, lambda n: _read_part(store, folder, n),
                                                       list(listing.parts))))
            live = holders(listing, {name: sources for name, (_, sources) in parts.items()})
            files = [name for name, holder in live.items() if holder is None]
            tables = dict(zip(files, _parallel(store, lambda n: _read_file_table(store, folder, n), files)))
        except (OSError, ValueError) as exc:
            if _gone(exc):
                continue
            raise
        try:
            if not _complete(store, folder, listing, live):
                continue  # a compaction ran meanwhile and this listing missed rows it moved
        except (OSError, ValueError) as exc:
            if _gone(exc):
                continue
            raise
        pieces = [(name, table, 0, table.num_rows) for name, table in tables.items()]
        for part, (table, sources) in parts.items():
            start = 0
            for source, rows in sources:
                if live.get(source) == part:
                    pieces.append((source, table, start, rows))
                start += rows
        return _assemble(pieces)
    raise ReadRace(f"{store.uri}/{folder}: changed by a compaction {READ_ATTEMPTS} times while being read")


def _complete(store, folder: str, listing: Listing, live: Dict[str, Optional[str]]) -> bool:
    """Whether a read from ``listing`` has every source: a second listing finds no part that
    appeared since and holds a source the first one did not have. (A listing is not atomic: one
    taken during a compaction can miss a file already deleted and the new part that holds its
    rows. Parts are written before anything is deleted, so the second listing sees that part.)"""
    new = [name for name in list_folder(store, folder).parts if name not in listing.parts]
    return all(source in live for name in new for source, _ in part_sources(store, folder, name))


def _indexed_parts(store, folder: str) -> Optional[List[str]]:
    """The parts the folder's index names (None without an index)."""
    try:
        names = json.loads(store.read_bytes(folder, INDEX))
    except (OSError, ValueError) as exc:
        if _gone(exc):
            return None
        raise
    return [name for name in names if is_part(name)]


def read_source(store, folder: str, source: str) -> Optional[pa.Table]:
    """The live rows of one source (``<trial_id>.parquet``): its file, else its rows in the
    part of highest generation that holds it; None when neither exists. The parts are those of
    the folder's index (one small read, not a listing of the folder: a trial's own reads stay
    O(1) however many files the folder holds), or of a listing when it has none. A compaction
    writes the index after its new part and before it deletes anything, so a source whose file
    is gone is in a part the index names; a part deleted since the index was read makes the
    reader start again."""
    for _ in range(READ_ATTEMPTS):
        try:
            return _read_file_table(store, folder, source)
        except (OSError, ValueError) as exc:
            if not _gone(exc):
                raise
        try:
            parts = _indexed_parts(store, folder)
            if parts is None:
                listing = list_folder(store, folder)
                if source in listing.files:
                    continue  # written meanwhile
                parts = list(listing.parts)
            for part in sorted(parts, key=generation, reverse=True):
                sources = part_sources(store, folder, part)
                start = 0
                for name, rows in sources:
                    if name == source:
                        return _read_rows(store, folder, part, start, rows)
                    start += rows
            return None
        except (OSError, ValueError) as exc:
            if not _gone(exc):
                raise
    raise ReadRace(f"{store.uri}/{folder}/{source}: changed by a compaction {READ_ATTEMPTS} times while being read")


def _read_rows(store, folder: str, part: str, start: int, rows: int) -> pa.Table:
    """Rows ``[start, start + rows)`` of a part, reading only the row groups that hold them."""
    from sweep.store import StoreError

    try:
        with store.fs.open_input_file(store.path(folder, part)) as handle:
            parquet = pq.ParquetFile(handle)
            groups, first, seen = [], None, 0
            for index in range(parquet.metadata.num_row_groups):
                count = parquet.metadata.row_group(index).num_rows
                if seen + count > start and seen < start + rows:
                    groups.append(index)
                    first = seen if first is None else first
                seen += count
            if not groups:
                return parquet.schema_arrow.empty_table().replace_schema_metadata(None)
            table = parquet.read_row_groups(groups)
    except pa.ArrowInvalid as exc:
        raise StoreError(f"{store.uri}/{folder}/{part}: not a Parquet file ({exc})") from exc
    return table.slice(start - first, rows).replace_schema_metadata(None)


def source_names(store, folder: str) -> Set[str]:
    """Every source a table folder holds, as a file or in a part (the names a listing of an
    uncompacted folder would give)."""
    listing = list_folder(store, folder)
    names = set(listing.files)
    for part, sources in zip(listing.parts, _parallel(store, lambda n: part_sources(store, folder, n),
                                                      list(listing.parts))):
        names.update(source for source, _ in sources)
    return names


# ---------------------------------------------------------------------------------------------
# compaction


@dataclass
class Compaction:
    """What one compaction of a folder did."""

    folder: str
    part: Optional[str] = None  # the part written (None: nothing to do)
    files: int = 0  # per-trial files compacted into it
    parts_merged: int = 0
    rows: int = 0
    deleted: int = 0  # files and parts deleted after the part was written
    kept: List[str] = field(default_factory=list)  # compacted files rewritten meanwhile (not deleted)


def _part_name(gen: int) -> str:
    return f"part-{gen:06d}-{uuid.uuid4().hex[:8]}.parquet"


def compact_folder(store, folder: str, eligible: Callable[[str], bool], *, minimum: Optional[int] = None,
                   before_delete: Optional[Callable[[], None]] = None) -> Compaction:
    """Compact one table folder (module docstring): the per-trial files whose source
    ``eligible(name)`` accepts, when there are at least ``minimum`` of them (default
    :func:`min_files`) or a part holds a superseded copy. ``before_delete`` (tests) is called
    after the new part is written."""
    minimum = min_files() if minimum is None else minimum
    result = Compaction(folder)
    listing = list_folder(store, folder)
    for name in listing.temporaries:  # left by a killed compaction: never read, safe to drop
        _delete(store, folder, name)
    for name in listing.sidecars:  # the sources of a part a killed compaction did not write, or deleted
        if f"{name[1:-len('.json')]}.parquet" not in listing.parts:
            _delete(store, folder, name)
    sources = {part: part_sources(store, folder, part) for part in listing.parts}
    live = holders(listing, sources)
    candidates = sorted(name for name in listing.files if eligible(name))
    # Parts that hold a copy someone else holds the live one of: merged away, so that a raw
    # folder read is exactly-once at rest.
    stale = [p for p in listing.parts if any(live.get(s) != p for s, _ in sources[p])]
    if len(candidates) < minimum and not stale:
        return result
    part_rows = {p: sum(r for _, r in sources[p]) for p in listing.parts}
    merged = list(stale)
    # The candidates' rows are known once they are read: read them first.
    gathered = sum(part_rows[p] for p in merged)
    tables = dict(zip(candidates, _parallel(store, lambda n: _read_file_table(store, folder, n), candidates)))
    gathered += sum(t.num_rows for t in tables.values())
    rest = sorted((p for p in listing.parts if p not in merged), key=lambda p: (part_rows[p], p))
    for part in rest:
        if part_rows[part] <= gathered or len(listing.parts) - len(merged) + 1 > MAX_PARTS:
            merged.append(part)
            gathered += part_rows[part]
    part_tables = dict(zip(merged, _parallel(store, lambda n: _read_part(store, folder, n)[0], merged)))
    pieces = [(name, table, 0, table.num_rows) for name, table in tables.items()]
    for part in merged:
        start = 0
        for source, rows in sources[part]:
            if live.get(source) == part:
                pieces.append((source, part_tables[part], start, rows))
            start += rows
    if not pieces and not merged:
        return result
    if pieces:
        pieces.sort(key=lambda piece: piece[0])
        table = _assemble(pieces)
        order = [(source, rows) for source, _, _, rows in pieces]
        sink = io.BytesIO()
        pq.write_table(table.replace_schema_metadata(None), sink, row_group_size=ROW_GROUP_ROWS)
        gen = max((generation(p) for p in listing.parts), default=0) + 1
        result.part = _part_name(gen)
        # The sources first: a part is never without them.
        store.write_text(json.dumps(order, separators=(",", ":")), folder, sidecar(result.part))
        store.write_bytes(sink.getvalue(), folder, result.part)
        with _SOURCES_LOCK:
            _SOURCES[(store.uri, folder, result.part)] = order
        result.rows = table.num_rows
    result.files, result.parts_merged = len(candidates), len(merged)
    # The index before any deletion: the parts a source whose file is gone can be in.
    store.write_text(json.dumps(sorted([p for p in listing.parts if p not in merged]
                                       + ([result.part] if result.part else []))), folder, INDEX)
    if before_delete is not None:
        before_delete()
    for part in merged:
        result.deleted += _delete(store, folder, part)
        _delete(store, folder, sidecar(part))  # after its part: a part is never without its sources
    now = list_folder(store, folder).files
    unchanged = []
    for name in candidates:
        entry = now.get(name)
        if entry is None:
            continue
        if (entry.size, entry.mtime_ns) != (listing.files[name].size, listing.files[name].mtime_ns):
            result.kept.append(name)  # rewritten since it was read: the newer file wins; compacted next time
            continue
        unchanged.append(name)
    result.deleted += sum(_parallel(store, lambda name: _delete(store, folder, name), unchanged))
    return result


def _delete(store, folder: str, name: str) -> int:
    try:
        store.fs.delete_file(store.path(folder, name))
        return 1
    except FileNotFoundError:
        return 0


def table_folders(store, names: Optional[Iterable[str]] = None) -> List[str]:
    """The experiment's folders of per-trial tables (every folder but checkpoints, analysis
    and Tune's), or those of ``names`` that exist."""
    infos = store.fs.get_file_info(pafs.FileSelector(store.root, allow_not_found=True))
    present = sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory
                     and i.base_name not in NOT_TABLES and not i.base_name.startswith((".", "_")))
    if names is None:
        return present
    wanted = set(names)
    return [name for name in present if name in wanted]


def compact(store, trials: Set[str], folders: Optional[Iterable[str]] = None, *,
            minimum: Optional[int] = None) -> List[Compaction]:
    """Compact the files of the finished ``trials`` in the experiment's table ``folders``
    (default: every table folder); returns one :class:`Compaction` per folder that changed."""
    done = []
    for folder in table_folders(store, folders):
        result = compact_folder(store, folder, lambda name: source_trial(name) in trials, minimum=minimum)
        if result.part is not None or result.deleted:
            done.append(result)
    return done


def measure_tables() -> Set[str]:
    """The folders the measures job writes: ``measures/`` and its families' long tables."""
    from measures import registry

    return {"measures", *(name for family in registry.names() for name in registry.get(family).tables)}


def compact_trial_tables(store, finished: Set[str], minimum: Optional[int] = None) -> List[Compaction]:
    """The driver's compaction: the tables trials write (epochs, models, a mode's tables),
    for the ``finished`` trials."""
    measured = measure_tables()
    return compact(store, finished, [f for f in table_folders(store) if f not in measured], minimum=minimum)


def compact_measure_tables(store, trials: Set[str], minimum: Optional[int] = None) -> List[Compaction]:
    """The measures job's compaction: ``measures/`` and the long tables, for ``trials``."""
    return compact(store, trials, measure_tables(), minimum=minimum)


def summary(results: Sequence[Compaction]) -> str:
    """One line: what the compactions did."""
    return "; ".join(f"{r.folder}: {r.files} files" + (f" and {r.parts_merged} parts" if r.parts_merged else "")
                     + f" into {r.part or 'nothing'} ({r.rows} rows)" for r in results)


def run(experiment: str, *, storage: Optional[str] = None, out=print) -> List[Compaction]:
    """``genzoo compact``: compact every table folder's files of the experiment's finished
    trials, however few (not while a launch or a measure job of it runs)."""
    from sweep.config import read_resolved_config
    from sweep.migrate import upgrade
    from sweep.store import FINISHED, Store
    from sweep.trials_table import TrialsTable

    store = Store(storage, experiment)
    upgrade(store, out=out)
    table = TrialsTable(store, read_resolved_config(store).trials())
    finished = {trial_id for trial_id, row in table.rows.items() if row.status in FINISHED}
    done = compact(store, finished, minimum=1)
    out(f"[{experiment}] compacted {summary(done)}" if done else f"[{experiment}] nothing to compact")
    return done

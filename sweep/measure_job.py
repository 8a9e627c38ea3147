"""The measures job: every model of an experiment as one Ray task that runs every requested
measure family on it (the data and the checkpoints are loaded once per model).

The unit is a *model* ``(trial_id, model_id)`` of the models table (``final`` for plain
training; several per trial for the modes that yield more). Tasks load the model's
checkpoint and data themselves (from the store, so they run on any node) and return rows;
the driver is the only writer of ``measures/<trial_id>.parquet`` and of the per-model long
tables, each rewritten atomically with the rows computed so far. A family's long tables are
written before its rows: the rows are the commit marker of (model, family), as ``state.pt``
is of a trial's epoch. Pairs already stored with status ``ok``, with the settings asked for
now and with every long table of the family present, are skipped unless ``force``, so an
interrupted job resumes by running it again; pairs stored with status ``error``, with other
settings (changed defaults, the sweep's ``measures:`` block or ``--set``) or without their
long table are computed again and replaced, and the first progress line says how many.

A family that raises for one model (corrupt checkpoint, out of memory) becomes rows with
status ``error`` and the exception's message; every other task still runs. A value that is
not a finite number (NaN, or infinity: a σ search that found no σ) is stored as an ``error``
row with the reason, never as ``ok``.

Settings: each family's defaults are the fields of its settings dataclass
(:mod:`measures.specs`); the sweep file's ``measures:`` block and then ``--set
FAMILY.SETTING=VALUE`` override them; ``measures.families`` (or ``--measures``) chooses the
families, all that apply by default. All of it is validated before
anything runs (:func:`resolve_settings`), and the resolved settings are stored with every row.
"""

from __future__ import annotations

import json
import logging
import math
import time
import traceback
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import pandas as pd

from measures import registry
from measures.context import TrialContext, trial_context
from sweep import compact
from sweep import extensions as extension_modules
from sweep.store import COMPLETED, ERROR, FINAL_MODEL, LONG_TABLE_SCHEMAS, MEASURE_SCHEMA, OK, Store
from trainers import checkpoint
from trainers.allocator import keep_freed_memory
from trainers.config import TrainConfig


# Bad input to the job (unknown family or setting, no trained trial): one line naming it.
MeasureJobError = registry.MeasureError


def applicable(family: str, config: TrainConfig) -> Optional[str]:
    """Why ``family`` does not apply to a trial of ``config`` (None when it does)."""
    needs = registry.get(family).needs
    if "early" in needs and not config.checkpoint_epochs:
        return "needs an early checkpoint (checkpoint_epochs is empty)"
    return None


def resolve_settings(families: Sequence[str], sweep_measures: Mapping[str, Mapping[str, Any]],
                     overrides: Sequence[str] = ()) -> Dict[str, Dict[str, Any]]:
    """Every family's settings: its defaults, then the sweep's ``measures:`` block, then the
    ``FAMILY.SETTING=VALUE`` overrides (values read as YAML: ``1e-3`` is a number). Unknown
    families, unknown keys and bad values raise :class:`MeasureJobError` naming the field."""
    merged = {name: dict(values) for name, values in sweep_measures.items()}
    for item in overrides:
        key, sep, raw = item.partition("=")
        family, dot, setting = key.partition(".")
        if not sep or not dot or not family or not setting:
            raise MeasureJobError(f"--set: got {item!r}, allowed: FAMILY.SETTING=VALUE")
        merged.setdefault(family, {})[setting] = registry.parse_value(raw)
    for name in merged:
        if name not in registry.FAMILIES:
            raise MeasureJobError(f"measures.{name}: unknown family, allowed: {', '.join(registry.names())}")
    resolved = {name: registry.settings_for(name, merged.get(name)) for name in registry.names()}
    return {name: resolved[name] for name in families}


def family_rows(trial_id: str, model_id: str, family: str, values: Mapping[str, float], seconds: float,
                settings: Mapping[str, Any], info: Mapping[str, Any], error: Optional[str] = None) -> List[Dict[str, Any]]:
    settings_json = json.dumps({"settings": dict(settings), "info": dict(info)}, sort_keys=True, default=str)
    if error is not None:
        names = [m for m in registry.get(family).measures if not m.endswith("*")] or [family]
        return [dict(trial_id=trial_id, model_id=model_id, family=family, measure=m, value=math.nan, seconds=seconds,
                     status=ERROR, error=error, settings=settings_json) for m in names]
    return [dict(trial_id=trial_id, model_id=model_id, family=family, measure=name, value=float(value),
                 seconds=seconds, status=OK, error=None, settings=settings_json) for name, value in values.items()]


def build_context(store: Store, config: TrainConfig, model_id: str = FINAL_MODEL, *, device,
                  data_root=None, unreadable: Optional[Dict[str, str]] = None) -> TrialContext:
    """Load one model of a trained trial from the store: its data (with the same label
    noise), its weights, the trial's initial and earliest early weights, and the trial's
    per-epoch records. With ``unreadable`` (a dict), an initial or early checkpoint that does
    not load is left out of the context and its one-line error recorded there under the need
    it serves (``init``, ``early``), so that only the families that need it fail."""
    from trainers import data

    trial_id = config.trial_id
    dataset = data.load(config.dataset, data_root, train_size=config.train_size,
                        label_noise=config.label_noise, seed=config.seed)

    model_file = checkpoint.model_name(model_id)

    def read_state(name: str, need: Optional[str] = None):
        parts = store.checkpoint_parts(trial_id, name)
        if name != model_file and not store.exists(*parts):
            return None
        where = f"{store.uri}/{'/'.join(parts)}"
        try:
            return checkpoint.load_bytes(store.read_bytes(*parts), where, map_location=device)
        except checkpoint.CheckpointError as exc:
            if need is None or unreadable is None:
                raise
            unreadable[need] = (f"{exc}; delete it and run `genzoo sweep resume` to retrain the trial, "
                                "then `genzoo measure` again")
            return None

    early_epoch = min(config.checkpoint_epochs) if config.checkpoint_epochs else None
    return trial_context(
        config, dataset, device=device,
        final_state=read_state(model_file),
        init_state=read_state(checkpoint.INIT, "init"),
        early_state=read_state(checkpoint.early_name(early_epoch), "early") if early_epoch else None,
        early_epoch=early_epoch,
        epochs=store.epochs(trial_id).to_dict("records"),
    )


def compute_model(storage: str, experiment: str, config_dict: Dict[str, Any], model_id: str,
                  settings: Dict[str, Dict[str, Any]], *, threads: int = 1, use_gpu: bool = False,
                  data_root: Optional[str] = None,
                  extensions: Sequence[str] = ()) -> List[Tuple[str, List[dict], Dict[str, dict]]]:
    """One model, every family of ``settings`` (family -> its settings), in one task: the data
    and the checkpoints are loaded once. Returns (family, measure rows, long tables) per
    family. Never raises for a failure of a measure: a family that fails becomes rows with
    status ``error`` and the others still run; a model that cannot be loaded makes every
    family an error. ``extensions``: the sweep's extension modules, imported first (a task
    may be the first thing its worker process runs)."""
    import torch

    extension_modules.load(extensions)
    torch.set_num_threads(max(1, threads))
    keep_freed_memory()
    config = TrainConfig.from_dict(config_dict)
    device = "cuda" if use_gpu and torch.cuda.is_available() else "cpu"
    started = time.perf_counter()
    unreadable: Dict[str, str] = {}
    try:
        ctx = build_context(Store(storage, experiment), config, model_id, device=device, data_root=data_root,
                            unreadable=unreadable)
    except Exception as exc:  # a corrupt model checkpoint or missing data: every family records it
        message = _one_line(exc)
        seconds = time.perf_counter() - started
        return [(family, family_rows(config.trial_id, model_id, family, {}, seconds, values, {}, message), {})
                for family, values in settings.items()]
    # Each family gets the loaded weights as they were, whatever the previous family did.
    weights = {name: tensor.detach().clone() for name, tensor in ctx.model.state_dict().items()}
    results = []
    for family, values in settings.items():
        broken = [unreadable[need] for need in registry.get(family).needs if need in unreadable]
        if broken:  # an initial or early checkpoint that does not load fails only its families
            results.append((family, family_rows(config.trial_id, model_id, family, {}, 0.0, values, {},
                                                broken[0][:1000]), {}))
            continue
        ctx.model.load_state_dict(weights)
        ctx.model.eval()
        results.append((family, *_compute_family(ctx, config.trial_id, model_id, family, values)))
    return results


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:500]


def _compute_family(ctx: TrialContext, trial_id: str, model_id: str, family: str,
                    settings: Dict[str, Any]) -> Tuple[List[dict], Dict[str, dict]]:
    started = time.perf_counter()
    try:
        output = registry.get(family).fn(ctx, **settings)
    except Exception as exc:  # one failing family must not stop the others: it is recorded instead
        logging.getLogger(__name__).debug("%s/%s/%s failed\n%s", trial_id, model_id, family, traceback.format_exc())
        return family_rows(trial_id, model_id, family, {}, time.perf_counter() - started, settings, {},
                           _one_line(exc)), {}
    seconds = time.perf_counter() - started
    values = {name: value for name, value in output.values.items()}
    rows = family_rows(trial_id, model_id, family, values, seconds, settings, output.info)
    for row in rows:
        if not math.isfinite(row["value"]):
            row.update(status=ERROR, error=f"{row['measure']} = {row['value']}: not a finite number "
                                           f"(see the family's settings)", value=math.nan)
    return rows, {name: dict(table) for name, table in output.tables.items()}


def settings_text(settings: Mapping[str, Any]) -> str:
    """One canonical text per settings mapping (tuples and lists alike), to compare a stored
    row's settings with the ones asked for."""
    return json.dumps(json.loads(json.dumps(dict(settings), default=str)), sort_keys=True)


def stored_settings(row_settings: str) -> Optional[str]:
    """:func:`settings_text` of the settings a stored row was computed with (None if unreadable)."""
    try:
        return settings_text(json.loads(row_settings)["settings"])
    except (TypeError, ValueError, KeyError):
        return None


def plan(store: Store, models: Sequence[Tuple[str, str]], families: Sequence[str],
         settings: Mapping[str, Mapping[str, Any]], configs: Mapping[str, TrainConfig],
         force: bool = False, existing: Optional[pd.DataFrame] = None) -> Tuple[List[Tuple[str, str, str]], Dict[str, int]]:
    """The (trial, model, family) tasks to run, and counts: ``stored`` (ok, same settings,
    tables present: skipped), ``changed`` (ok but computed with other settings: recomputed),
    ``incomplete`` (ok rows whose long table is missing: recomputed), ``not_applicable``.
    ``existing``: the measures table, when the caller has read it. The store is read once per
    table (the long tables: one listing each), whatever the number of models."""
    wanted = {family: settings_text(settings[family]) for family in families}
    if force:
        existing = pd.DataFrame(columns=MEASURE_SCHEMA.names)
    elif existing is None:
        existing = store.measures()
    # One key per (model, family, settings) (a family's rows of a model share their settings),
    # each distinct settings text parsed once.
    keys = existing[["trial_id", "model_id", "family", "status", "settings"]].drop_duplicates()
    texts = {text: stored_settings(text) for text in keys.loc[keys["status"] == OK, "settings"].unique()}
    ok_with: Dict[Tuple[str, str, str], set] = {}
    for trial_id, model_id, family, text in keys.loc[keys["status"] == OK, ["trial_id", "model_id", "family",
                                                                            "settings"]].itertuples(index=False):
        ok_with.setdefault((trial_id, model_id, family), set()).add(texts[text])
    # A family with any error row is tried again, whatever its other rows say.
    for key in keys.loc[keys["status"] == ERROR, ["trial_id", "model_id", "family"]].itertuples(index=False):
        ok_with.pop(tuple(key), None)
    table_files = {name: compact.source_names(store, name)
                   for name in {name for family in families for name in registry.get(family).tables}}
    todo: List[Tuple[str, str, str]] = []
    counts = {"stored": 0, "changed": 0, "incomplete": 0, "not_applicable": 0}
    for trial_id, model_id in models:
        for family in families:
            if applicable(family, configs[trial_id]):
                counts["not_applicable"] += 1
                continue
            stored = ok_with.get((trial_id, model_id, family))
            if stored is not None:
                missing = [name for name in registry.get(family).tables
                           if table_file(trial_id, model_id) not in table_files[name]]
                if stored != {wanted[family]}:
                    counts["changed"] += 1
                elif missing:
                    counts["incomplete"] += 1
                else:
                    counts["stored"] += 1
                    continue
            todo.append((trial_id, model_id, family))
    return todo, counts


@dataclass
class JobPlan:
    """What a measure job will do, decided before Ray is touched: the store, the sweep, the
    families and their resolved settings, the completed trials' configs, every model, the
    stored measures, the (trial, model, family) tasks to run and the counts of :func:`plan`."""

    store: Store
    sweep: Any  # sweep.config.SweepConfig
    families: List[str]
    settings: Dict[str, Dict[str, Any]]
    configs: Dict[str, TrainConfig]
    models: List[Tuple[str, str]]
    existing: pd.DataFrame
    todo: List[Tuple[str, str, str]]
    counts: Dict[str, int]

    def summary(self) -> str:
        again = [f"{self.counts['changed']} stored with other settings (recomputed)" if self.counts["changed"] else "",
                 f"{self.counts['incomplete']} stored without their long table (recomputed)"
                 if self.counts["incomplete"] else "",
                 f"{self.counts['not_applicable']} not applicable" if self.counts["not_applicable"] else ""]
        return (f"[measure {self.store.experiment}] {len(self.todo)} (model, family) tasks to run over "
                f"{len(self.models)} models of {len(self.configs)} trials; {self.counts['stored']} already stored"
                + "".join(f", {a}" for a in again if a))

    def by_model(self) -> Dict[Tuple[str, str], List[str]]:
        return by_model(self.todo)


def by_model(todo: Sequence[Tuple[str, str, str]]) -> Dict[Tuple[str, str], List[str]]:
    """The families to run per model of (trial, model, family) tasks, in their order: one Ray
    task each."""
    out: Dict[Tuple[str, str], List[str]] = {}
    for trial_id, model_id, family in todo:
        out.setdefault((trial_id, model_id), []).append(family)
    return out


def plan_job(experiment: str, *, storage: Optional[str] = None, measures: Optional[str | Sequence[str]] = None,
             force: bool = False, overrides: Sequence[str] = (), out=print) -> JobPlan:
    """Read the store once and decide the job: every bad input fails here, before Ray starts."""
    from sweep.config import read_resolved_config
    from sweep.migrate import upgrade

    store = Store(storage, experiment)
    upgrade(store, out=out)
    sweep_config = read_resolved_config(store)  # imports the sweep's extensions first
    families = _families(measures, sweep_config.measure_families)
    settings = resolve_settings(families, sweep_config.measures, overrides)
    trials = store.trials()
    completed = set(trials[trials["status"] == COMPLETED]["trial_id"]) if len(trials) else set()
    configs = {c.trial_id: c for c in sweep_config.trials() if c.trial_id in completed}
    if not configs:
        raise MeasureJobError(f"experiment: no completed trial in {store.uri} (run `genzoo sweep run` first)")
    # One read of the models and measures tables, not one per trial.
    model_table = store.models()
    model_ids: Dict[str, List[str]] = {}
    for trial_id, model_id in zip(model_table["trial_id"], model_table["model_id"]):
        model_ids.setdefault(trial_id, []).append(model_id)
    models = [(trial_id, model_id) for trial_id in configs for model_id in model_ids.get(trial_id, ())]
    existing = store.measures()
    todo, counts = plan(store, models, families, settings, configs, force, existing=existing)
    return JobPlan(store, sweep_config, families, settings, configs, models, existing, todo, counts)


def submit(ray, store: Store, config: TrainConfig, model_id: str, settings: Mapping[str, Mapping[str, Any]], *,
           gpus: float, data_root: Optional[str], extensions: Sequence[str] = ()):
    """One Ray task that runs the families of ``settings`` on one model (:func:`compute_model`)."""
    task = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=1)(compute_model)
    return task.remote(store.storage, store.experiment, config.to_dict(), model_id, dict(settings), threads=1,
                       use_gpu=gpus > 0, data_root=data_root, extensions=tuple(extensions))


def dispatch(ray, job: JobPlan, *, gpus: float, data_root: Optional[str] = None) -> Dict[Any, Tuple[str, str, List[str]]]:
    """One Ray task per model of the plan, running its families on one loaded model: the
    pending object references, each with its (trial, model, families)."""
    return {
        submit(ray, job.store, job.configs[t], m, {f: job.settings[f] for f in families}, gpus=gpus,
               data_root=data_root, extensions=job.sweep.extensions): (t, m, families)
        for (t, m), families in job.by_model().items()
    }


def commit(store: Store, rows_by_trial: Dict[str, pd.DataFrame], trial_id: str, model_id: str,
           results: List[Tuple[str, List[dict], Dict[str, dict]]]) -> None:
    """Write one model's results: every family's long tables first, then the model's rows in
    its trial's measures file (one atomic rewrite). A row is the commit marker of its family:
    a table without its row is recomputed by the next run, never a row without its table."""
    for _family, _rows, tables in results:
        for name, table in tables.items():
            frame = pd.DataFrame(table)
            frame.insert(0, "model_id", model_id)
            frame.insert(0, "trial_id", trial_id)
            store.write_table(frame, name, table_file(trial_id, model_id), schema=LONG_TABLE_SCHEMAS.get(name))
    _store_rows(store, rows_by_trial, trial_id, model_id, results)


class Collector:
    """Takes finished tasks, commits their results (:func:`commit`), counts (model, family)
    pairs by status and prints a progress line at most every 10 s. ``existing``: the stored
    measures of the trials whose files the job will rewrite (their other rows are kept)."""

    def __init__(self, store: Store, existing: pd.DataFrame, settings: Mapping[str, Mapping[str, Any]], out) -> None:
        self.store, self.settings, self.out = store, settings, out
        self.rows_by_trial = {t: rows.reset_index(drop=True) for t, rows in existing.groupby("trial_id", sort=False)}
        self.counts = {OK: 0, ERROR: 0}
        self.started, self.last_print, self.finished = time.monotonic(), 0.0, 0

    def wait(self, ray, pending: Dict[Any, Tuple[str, str, List[str]]], timeout: float = 10.0) -> None:
        """Wait up to ``timeout`` for a task of ``pending`` and commit every one that is ready."""
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=timeout)
        for ref in ready:
            trial_id, model_id, families = pending.pop(ref)
            try:
                results = ray.get(ref)
            except Exception as exc:  # the worker itself died (killed, out of host memory)
                message = f"task failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
                results = [(f, family_rows(trial_id, model_id, f, {}, 0.0, self.settings[f], {}, message), {})
                           for f in families]
            commit(self.store, self.rows_by_trial, trial_id, model_id, results)
            for family, rows, _tables in results:
                failed = [row for row in rows if row["status"] == ERROR]
                self.counts[ERROR if failed else OK] += 1
                if failed:
                    self.out(f"[measure {self.store.experiment}] {trial_id}/{model_id}/{family}: error: "
                             f"{failed[0]['error']}"
                             + (f" (and {len(failed) - 1} more of its measures)" if len(failed) > 1 else ""))
            self.finished += 1

    def progress(self, left: int, *, force: bool = False) -> None:
        now = time.monotonic()
        if now - self.last_print < 10 and not force:
            return
        self.last_print = now
        elapsed, done = now - self.started, self.finished
        head = f"[measure {self.store.experiment}] models {done}/{done + left} done"
        if done:
            self.out(f"{head} ({self.counts[ERROR]} family errors) | elapsed {elapsed:.0f}s, "
                     f"ETA {elapsed / done * left:.0f}s")
        else:
            self.out(f"{head} | elapsed {elapsed:.0f}s")


def gpus_for_tasks(ray, gpus_per_task: Optional[float]) -> float:
    """``--gpus-per-task``, checked; by default 0.25 when the cluster has a GPU now, else 0."""
    if gpus_per_task is not None and not 0 <= gpus_per_task <= 1:
        raise MeasureJobError(f"--gpus-per-task: got {gpus_per_task:g}, allowed: a fraction of one GPU in [0, 1]")
    if gpus_per_task is not None:
        return gpus_per_task
    return 0.0 if ray is None or ray.cluster_resources().get("GPU", 0) <= 0 else 0.25


def run(experiment: str, *, storage: Optional[str] = None, measures: Optional[str | Sequence[str]] = None,
        gpus_per_task: Optional[float] = None, force: bool = False, address: Optional[str] = None,
        data_root: Optional[str] = None, autoscale: bool = False, overrides: Sequence[str] = (),
        out=print) -> Dict[str, int]:
    """Compute every requested family for every model of every completed trial; returns
    counts by status: :func:`plan_job`, then :func:`dispatch`, then :func:`commit` of each
    model as its task returns.

    ``gpus_per_task`` defaults to 0.25 when the cluster has a GPU now, else 0; on a cluster
    that adds GPU nodes on demand, pass it explicitly together with ``autoscale`` (see
    :func:`sweep.driver.check_cluster`). ``overrides``: ``FAMILY.SETTING=VALUE`` strings.
    """
    from sweep.cluster import check_cluster, connect_ray

    gpus_for_tasks(None, gpus_per_task)  # a bad value fails before anything is read
    job = plan_job(experiment, storage=storage, measures=measures, force=force, overrides=overrides, out=out)
    store = job.store
    out(job.summary())
    if not job.todo:
        _compact(store, set(job.configs), out)
        return {OK: 0, ERROR: 0}

    ray = connect_ray(address)
    gpus = gpus_for_tasks(ray, gpus_per_task)
    warning = check_cluster(ray.cluster_resources(), cpus=1, gpus=gpus, what="task", gpu_field="--gpus-per-task",
                            gpu_flag="--gpus-per-task", autoscale=autoscale)
    if warning:
        out(f"[measure {experiment}] {warning}")
    pending = dispatch(ray, job, gpus=gpus, data_root=data_root)
    out(f"[measure {experiment}] {len(pending)} tasks, one per model, each running its families on one loaded model")
    collector = Collector(store, job.existing[job.existing["trial_id"].isin({t for t, _, _ in job.todo})],
                          job.settings, out)
    while pending:
        collector.wait(ray, pending)
        collector.progress(len(pending), force=not pending)
    _compact(store, set(job.configs), out)
    return collector.counts


def _compact(store: Store, trials, out) -> None:
    """Compact the measures and long tables of ``trials`` (:mod:`sweep.compact`): the job's
    own writes are over."""
    done = compact.compact_measure_tables(store, trials)
    if done:
        out(f"[measure {store.experiment}] compacted {compact.summary(done)}")


def table_file(trial_id: str, model_id: str) -> str:
    """The file of one model's long table (``el2n/``, ``pruning_curves/``): ``<trial_id>.parquet``
    for a trial's final model, ``<trial_id>.<model_id>.parquet`` for its other models."""
    return f"{trial_id}.parquet" if model_id == FINAL_MODEL else f"{trial_id}.{model_id}.parquet"


def _store_rows(store: Store, cache: Dict[str, pd.DataFrame], trial_id: str, model_id: str,
                results: List[Tuple[str, List[dict], Dict[str, dict]]]) -> None:
    """Replace the model's rows of every family in ``results`` in the trial's measures file,
    keeping the other rows; one atomic rewrite. ``cache`` starts with the stored rows of every
    trial that has some (a trial missing from it has none)."""
    if trial_id not in cache:
        cache[trial_id] = pd.DataFrame(columns=MEASURE_SCHEMA.names)
    current = cache[trial_id]
    families = [family for family, _, _ in results]
    kept = current[~(current["family"].isin(families) & (current["model_id"] == model_id))]
    rows = [row for _, family_rows_, _ in results for row in family_rows_]
    merged = pd.concat([kept, pd.DataFrame(rows, columns=MEASURE_SCHEMA.names)], ignore_index=True)
    merged = merged.sort_values(["model_id", "family", "measure"], kind="stable").reset_index(drop=True)
    cache[trial_id] = merged
    store.write_measures(trial_id, merged.to_dict("records"))


def _families(measures: Optional[str | Sequence[str]], default: Sequence[str] = ()) -> List[str]:
    """The families of ``--measures``; without it, the sweep's ``measures.families``, else all."""
    if measures is None:
        return list(default) or registry.names()
    names = [m.strip() for m in measures.split(",")] if isinstance(measures, str) else list(measures)
    for name in names:
        if name not in registry.FAMILIES:
            raise MeasureJobError(f"--measures: unknown family {name!r}, allowed: {', '.join(registry.names())}")
    return names

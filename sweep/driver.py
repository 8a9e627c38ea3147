"""The Ray Tune driver: run, resume and report on a sweep.

One Tune trial per grid point (an explicit ``tune.grid_search`` over the resolved trial
configs), or, with ``resources.pack: K``, per pack of up to K grid points that share an
architecture (:func:`sweep.config.packs`; trained as one network by
:func:`trainers.packed.train_packed`, each model still committed as its own trial), each
reserving ``resources.cpus`` CPUs and ``resources.gpus`` of a GPU. A trial trains
with :func:`trainers.train.train` in a local scratch folder and, after every epoch, writes its
per-epoch records, its checkpoints and its resumable ``state.pt`` to the results store
(:mod:`sweep.trial`), then reports the epoch's metrics to Tune. The store's ``state.pt`` is the
only copy of the resumable state: Tune's retries continue from it, on any node, exactly as a
later launch does; nothing is reported to Tune as a checkpoint, so the state is written once
per epoch.

Resume does not go through ``Tuner.restore``: when the driver is killed, Tune's experiment
snapshot can name a checkpoint that ``num_to_keep`` has already deleted, and the restored
trial then fails every retry ("Could not recover from checkpoint as it does not exist on
storage anymore"). Each launch is instead a fresh Tune run (``_tune/run-<n>``) over the trials
not yet complete in the store, and each of them continues from the ``state.pt`` in the store.
The store is the source of truth: ``trials.parquet`` is derived from it plus Tune's error
reports.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import yaml

from sweep import compact, extensions, provenance, trackers, trial
from sweep.cluster import check_cluster, connect_ray
from sweep.launches import TUNE_DIR, next_run_name, record_launch, slot_utilization, utilization_text
from sweep import scratch
from sweep.store import StoreError
from sweep.config import SweepConfig, SweepConfigError, growth_refusal, packs, read_resolved_config
from sweep.progress import _trial_name, _tune_callback_class, share_table
from sweep.store import DIVERGED, FINISHED, RUNNING, STORE_VERSION, Store
from sweep.trials_table import FINAL_METRICS, TrialsTable
from trainers import checkpoint
from trainers.allocator import keep_freed_memory
from trainers.config import TrainConfig

# Tune snapshots its experiment state after reported results and warns about it when epochs
# are short; genzoo resumes from the store, so the warning is noise.
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
# Tune's newer console output ignores verbose=0 and prints its configuration table; the
# driver prints its own progress line instead.
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
# Ctrl-C raises KeyboardInterrupt in the driver instead of Tune's own stop, which snapshots its
# experiment and prints a `Tuner.restore` hint: genzoo resumes from the store (`sweep resume`).
os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")



# ---------------------------------------------------------------------------------------------
# plan


def plan_text(config: SweepConfig) -> str:
    trials = config.trials()
    lines = [f"experiment {config.experiment}: {len(trials)} trials"]
    for name, values in config.axes:
        lines.append(f"  axis {name} ({len(values)}): {', '.join(map(str, values))}")
    for index, variant in enumerate(config.variants):
        count = math.prod(len(v) for _, v in config.axes) * math.prod(
            len(v) for _, v in variant if isinstance(v, tuple))
        fields = ", ".join(f"{k}={list(v) if isinstance(v, tuple) else v}" for k, v in variant)
        lines.append(f"  variant {index} ({count} trials): {fields}")
        widths = dict(variant).get("width")
        if isinstance(widths, tuple) and len(widths) > 1:
            lines.append("    " + _width_fractions(config.base, widths))
    fixed = {k: v for k, v in config.base.to_dict().items() if k not in config.axis_names}
    lines.append("  fixed: " + ", ".join(f"{k}={v}" for k, v in fixed.items()))
    res = config.resources
    tune_trials = len(packs(trials, res.pack))
    lines.append(f"  resources per trial: {res.cpus:g} CPU, {res.gpus:g} GPU" + _concurrency(res))
    if res.pack > 1:
        lines.append(f"  packed: up to {res.pack} models per Tune trial, {tune_trials} Tune trials")
    per_trial = sorted({trial.total_epochs(t) for t in trials})
    per_text = f"{per_trial[0]}" if len(per_trial) == 1 else f"{per_trial[0]} to {per_trial[-1]}"
    targets = sorted({t.stop_at_train_loss for t in trials if t.stop_at_train_loss is not None})
    if targets:
        # The caps: a trial ends earlier once its training loss reaches its target.
        lines.append(f"  epochs: at most {per_text} per trial, {sum(trial.total_epochs(t) for t in trials)} in total; "
                     f"each stops at training loss {', '.join(f'{v:g}' for v in targets)}")
    else:
        lines.append(f"  epochs: {per_text} per trial, {sum(trial.total_epochs(t) for t in trials)} in total")
    return "\n".join(lines)


def _width_fractions(base: TrainConfig, widths) -> str:
    """Each width's conv/linear weight count as a fraction of the first width's, next to
    IMP's 0.8^k at the same step k (width down-scaling, Jin et al. 2022, Section 5.2)."""
    from trainers import models
    from trainers.data import registry as datasets
    from trainers.pruning import prunable_parameters

    dataset = datasets.get(base.dataset)
    counts = [sum(p.numel() for _, p in prunable_parameters(
        models.build(base.model, dataset.classes, width=w, input_shape=dataset.input_shape))) for w in widths]
    return "weights remaining: " + ", ".join(
        f"width {w}: {c / counts[0]:.3f} (0.8^{k} = {0.8 ** k:.3f})" for k, (w, c) in enumerate(zip(widths, counts)))


def _concurrency(res) -> str:
    if res.gpus <= 0:
        return ""
    at_once = int(1 // res.gpus)
    return f" ({at_once} trial at a time on each GPU)" if at_once == 1 else f" (up to {at_once} trials share each GPU)"


# ---------------------------------------------------------------------------------------------
# the trial, run inside a Ray worker


def run_trial(params: Dict[str, Any]) -> None:
    """The Tune function trainable. ``params``: the trial's configs (one grid point, or a pack
    of several with ``resources.pack``), the store location, the resources (to size torch's
    thread pool and GPU memory share), the fault setting."""
    import torch
    from ray import tune

    extensions.load(params.get("extensions", ()))  # before the configs: they may name an extension's model
    configs = [TrainConfig.from_dict(c) for c in params["trial"]["configs"]]
    store = Store(params["storage"], params["experiment"])
    torch.set_num_threads(max(1, int(params["cpus"])))
    keep_freed_memory()
    device = torch.device("cpu")
    if params["gpus"] > 0 and torch.cuda.is_available():
        device = torch.device("cuda", 0)
        if params["gpus"] < 1:
            # Ray only promises the fraction; this makes a trial that outgrows it fail loudly.
            torch.cuda.set_per_process_memory_fraction(params["gpus"], device)

    pending = []
    for config in configs:
        if trial.is_complete(store, config):
            store.delete(*store.checkpoint_parts(config.trial_id, checkpoint.STATE))  # left by a crash while finishing
            tune.report(_metrics(config, store.epochs(config.trial_id).to_dict("records")[-1]))
        else:
            pending.append(config)
    if not pending:
        return
    # A first attempt and a retry alike continue from the store's state.pt, if any. A pack
    # trains packed even when one model is left: as it did when the others had stopped.
    if not params["trial"].get("packed"):
        trial.train_trial(pending[0], store, device=device, data_root=params.get("data_root"),
                          report=lambda record, state_path: tune.report(_metrics(pending[0], record)),
                          fault_epoch=params.get("fault_epoch"))
    else:
        trial.train_pack(pending, store, device=device, data_root=params.get("data_root"),
                         report=lambda config, record: tune.report(_metrics(config, record)),
                         fault_epoch=params.get("fault_epoch"))


def _metrics(config: TrainConfig, record: Dict[str, Any]) -> Dict[str, Any]:
    return {
        "genzoo_trial_id": config.trial_id,  # Tune reserves "trial_id" for its own id
        "epoch": int(record["epoch"]),
        "epochs_total": trial.total_epochs(config),
        **{k: record[k] for k in FINAL_METRICS},
        "epoch_seconds": float(record.get("seconds", math.nan)),
        "status": record["status"] if record["status"] == DIVERGED or record["epoch"] == trial.total_epochs(config)
        or config.reaches_target(record["train_loss"]) else RUNNING,
    }


# ---------------------------------------------------------------------------------------------
# run and resume


def _provenance(config: SweepConfig, started_at, finished_at=None) -> str:
    """sweep.yaml: the resolved config, the store version, every dependency's version and the
    provenance of this launch (:mod:`sweep.provenance`)."""
    document = config.to_dict()
    document["store_version"] = STORE_VERSION
    document["versions"] = provenance.versions()
    document["provenance"] = provenance.sweep_provenance(started_at, finished_at)
    return yaml.safe_dump(document, sort_keys=False)


@dataclass
class LaunchPlan:
    """What a launch will train, decided from the store before Ray is touched: the trials
    table as the store has it, the trials still to train and their Tune trials (packs)."""

    config: SweepConfig
    store: Store
    configs: List[TrainConfig]
    table: TrialsTable
    pending: List[TrainConfig]
    groups: List[Tuple[List[TrainConfig], bool]]
    started_at: Any

    def summary(self, run_name: str) -> str:
        packed = f" in {len(self.groups)} packs" if self.config.resources.pack > 1 else ""
        return (f"[{self.config.experiment}] {len(self.pending)} of {len(self.configs)} trials to train{packed} -> "
                f"{self.store.uri} (Tune run {TUNE_DIR}/{run_name})")


def plan_launch(config: SweepConfig, store: Store, out) -> LaunchPlan:
    """Read the store (upgrading and repairing it first) and decide what to train; refuses a
    store that holds another sweep."""
    from sweep.migrate import upgrade

    started_at = provenance.now()
    store.check_writable()
    scratch.reap()  # the scratch folders of trials killed on this machine
    configs = config.trials()
    upgrade(store, out=out)
    _drop_damaged_trials_table(store, out)
    grown = 0
    if store.exists("sweep.yaml"):
        previous = read_resolved_config(store)
        refusal = growth_refusal(previous, config)
        if refusal is not None:
            raise SweepConfigError(
                f"{refusal}: {store.uri} holds another sweep; allowed: a sweep that contains it (more grid values "
                f"or seeds), `genzoo sweep resume {config.experiment}` to continue it, or another experiment name"
            )
        grown = len(configs) - len(previous.trials())
    table = TrialsTable(store, configs)
    pending = [c for c in configs if table.rows[c.trial_id].status not in FINISHED]
    if grown and config.resources.pack > 1:
        # A pack is formed from the whole sweep; a grown sweep can regroup a stored, half-trained
        # pack, whose resume would then not be the uninterrupted run's.
        unfinished = [t.trial_id for t in previous.trials() if table.rows[t.trial_id].status not in FINISHED]
        if unfinished:
            raise SweepConfigError(
                f"resources.pack: {len(unfinished)} stored trials are unfinished and a packed sweep cannot grow "
                f"around them; allowed: `genzoo sweep resume {config.experiment}` first, then grow it")
    groups = pending_packs(configs, {c.trial_id for c in pending}, config.resources.pack)
    if grown:
        out(f"[{config.experiment}] the sweep grows by {grown} trials; the {len(configs) - grown} stored ones are kept")
    return LaunchPlan(config, store, configs, table, pending, groups, started_at)


def prepare(launch: LaunchPlan, *, address: Optional[str], autoscale: bool, out):
    """Write sweep.yaml (a launch's first write: from here on `sweep resume` continues it),
    check the cluster can run a trial (a refused launch leaves the store as it was), write the
    trials table and tidy what a killed launch left. Returns Ray (None with nothing to train)."""
    config, store, table = launch.config, launch.store, launch.table
    before = store.read_bytes("sweep.yaml") if store.exists("sweep.yaml") else None
    store.write_text(_provenance(config, launch.started_at), "sweep.yaml")
    ray = None
    if launch.pending:
        try:
            ray = connect_ray(address)
            warning = check_cluster(ray.cluster_resources(), cpus=config.resources.cpus,
                                    gpus=config.resources.gpus, what="trial", gpu_field="resources.gpus",
                                    gpu_flag="--gpus-per-trial", autoscale=autoscale)
        except SweepConfigError:
            _undo_launch(store, before)  # a sweep the cluster can never run leaves no trace
            raise
        if warning:
            out(f"[{config.experiment}] {warning}")
    table.write()
    _drop_stray_states(store, table)
    # The unfinished trials' checkpoints, as the listing of checkpoints/ shows them: those a kill left.
    trial.check_resumable(store, [c for c in launch.pending if table.state.files.get(c.trial_id)],
                          out=lambda line: out(f"[{config.experiment}] {line}"))
    _compact(store, table, out)  # finished trials a killed launch left uncompacted
    return ray


def launch_tune(launch: LaunchPlan, run_name: str, *, data_root: Optional[str],
                log: Optional[trackers.Trackers] = None):
    """One Tune run over the plan's pending trials (packs); returns Tune's results once every
    trial has ended. Each trial reads and writes the store itself (:func:`run_trial`). ``log``:
    the trackers each trial's hyperparameters and per-epoch metrics go to (:mod:`sweep.trackers`)."""
    from ray import tune

    config, store = launch.config, launch.store
    trainable = tune.with_resources(run_trial, {"cpu": config.resources.cpus, "gpu": config.resources.gpus})
    callback = _tune_callback_class()(store.storage, config.experiment, [c.to_dict() for c in launch.configs],
                                      table=share_table(launch.table))
    param_space = {
        "trial": tune.grid_search([_tune_trial(group) for group in launch.groups]),
        "storage": store.storage,
        "experiment": config.experiment,
        "cpus": config.resources.cpus,
        "gpus": config.resources.gpus,
        "fault_epoch": config.fault_injection.epoch if config.fault_injection else None,
        "data_root": data_root,
        "extensions": list(config.extensions),
    }
    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            trial_name_creator=_trial_name, trial_dirname_creator=_trial_name,
            # Worker processes pay torch's import once, not once per trial.
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=run_name,
            # Tune gets the store's own filesystem: a URI's options (endpoint_override) are not a path.
            storage_path=f"{store.uri}/{TUNE_DIR}" if store.local_path() else f"{store.root}/{TUNE_DIR}",
            storage_filesystem=None if store.local_path() else store.fs,
            failure_config=tune.FailureConfig(max_failures=config.max_failures),
            callbacks=[callback, *trackers.callbacks(log, store, config.experiment)],
            verbose=0,
        ),
    )
    return tuner.fit()


def reconcile(launch: LaunchPlan, results, run_name: str, *, ray, wall: float, seconds_before: float,
              out) -> Dict[str, int]:
    """After Tune: the trials table rebuilt from the store (its source of truth) plus Tune's
    error reports, the launch's utilization recorded, the finished trials compacted, sweep.yaml
    closed; returns the status counts."""
    config, store = launch.config, launch.store
    table = TrialsTable(store, launch.configs)
    utilization = slot_utilization(table.state.training_seconds - seconds_before, wall,
                                   _slots(ray.cluster_resources(), config, len(launch.groups)))
    record_launch(store, run_name, utilization)
    errors = {
        trial_id: (str(r.error).strip().splitlines() or ["error"])[-1][:500]
        for r in results if r.error is not None for trial_id in r.config["trial"]["trial_ids"]
    }
    for trial_id, message in errors.items():
        table.refresh(trial_id, error=message)
    table.write()
    _compact(store, table, out)
    store.write_text(_provenance(config, launch.started_at, provenance.now()), "sweep.yaml")
    counts = table.counts()
    out(f"[{config.experiment}] " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    out(f"[{config.experiment}] {utilization_text(utilization)}")
    return counts


def run(
    config: SweepConfig,
    *,
    storage: Optional[str] = None,
    address: Optional[str] = None,
    data_root: Optional[str] = None,
    autoscale: bool = False,
    measure: bool = False,
    measure_families: Optional[str] = None,
    log: Optional[trackers.Trackers] = None,
    out=print,
) -> Dict[str, int]:
    """Train every trial of ``config`` not yet complete in the store; returns status counts:
    :func:`plan_launch`, :func:`prepare`, :func:`launch_tune`, :func:`reconcile`. With
    ``measure``, every model is also measured as soon as its trial completes
    (:mod:`sweep.measure_follow`, in a thread of the driver beside Tune), with the families
    ``measure_families`` (comma-separated; default: all that apply).

    Interrupted and errored trials continue from the resumable state in the store (see the
    module docstring for why this is not ``Tuner.restore``). The cluster must have the
    per-trial resources now (:func:`check_cluster`), unless ``autoscale``. ``log``: the trackers
    to log to (``--log``), checked before the store is touched.
    """
    store = Store(config.storage if storage is None else storage, config.experiment)
    trackers.check(log, store)
    launch = plan_launch(config, store, out)
    ray = prepare(launch, address=address, autoscale=autoscale, out=out)
    if not launch.pending:
        store.write_text(_provenance(config, launch.started_at, provenance.now()), "sweep.yaml")
        out(f"[{config.experiment}] all {len(launch.configs)} trials are complete in {store.uri}; nothing to train")
        if measure:  # what a previous launch trained but did not measure
            _Follower(store, address, data_root, measure_families, out).finish()
        return launch.table.counts()
    run_name = next_run_name(store)
    out(launch.summary(run_name))
    for line in trackers.describe(log, store, config.experiment):
        out(f"[{config.experiment}] {line}")
    seconds_before = launch.table.state.training_seconds
    fit_started = time.monotonic()
    follower = _Follower(store, address, data_root, measure_families, out) if measure else None
    results = launch_tune(launch, run_name, data_root=data_root, log=log)
    scratch.reap()
    counts = reconcile(launch, results, run_name, ray=ray, wall=time.monotonic() - fit_started,
                       seconds_before=seconds_before, out=out)
    if follower is not None:
        follower.finish()
    return counts


class _Follower:
    """:func:`sweep.measure_follow.follow` in a thread of the driver; ``finish`` tells it the
    Tune run has ended, waits for its last models and re-raises what it raised."""

    def __init__(self, store: Store, address: Optional[str], data_root: Optional[str], families: Optional[str],
                 out) -> None:
        import threading

        from sweep import measure_follow

        self.ended, self.error = threading.Event(), None

        def target():
            try:
                measure_follow.follow(store.experiment, storage=store.storage, measures=families, address=address,
                                      data_root=data_root,
                                      until=self.ended.is_set, out=out)
            except BaseException as exc:  # noqa: BLE001 - handed to the driver's thread in finish()
                self.error = exc

        self.thread = threading.Thread(target=target, name="genzoo-measure-follow", daemon=True)
        self.thread.start()

    def finish(self) -> None:
        self.ended.set()
        self.thread.join()
        if self.error is not None:
            raise self.error


def pending_packs(configs, pending_ids, size: int):
    """The packs of every trial of the sweep (:func:`sweep.config.packs`), each cut down to its
    models still to train, as ``(models, packed)`` with ``packed`` whether the pack holds more
    than one trial. Packs are formed from every trial, not only the pending ones, so that a
    resumed pack is the pack it was (:mod:`sweep.trial`): the same models trained together."""
    out = []
    for pack in packs(configs, size):
        left = [c for c in pack if c.trial_id in pending_ids]
        if left:
            out.append((left, len(pack) > 1))
    return out


def _tune_trial(group) -> Dict[str, Any]:
    """One Tune trial: a grid point, or a pack of them (named after its first trial)."""
    group, packed = group
    name = f"pack{len(group)}-{group[0].trial_id}" if packed else group[0].trial_id
    return {"trial_id": name, "trial_ids": [c.trial_id for c in group], "configs": [c.to_dict() for c in group],
            "packed": packed}


def _drop_damaged_trials_table(store: Store, out) -> None:
    """A ``trials.parquet`` that does not read is derived data: reported in one line and
    deleted, it is rebuilt from the store (only the last error lines of failed trials are lost)."""
    try:
        store.trials()
    except StoreError as exc:
        out(f"[{store.experiment}] {exc}; rebuilt from the store")
        store.delete("trials.parquet")


def _undo_launch(store: Store, before: Optional[bytes]) -> None:
    """Put ``sweep.yaml`` back as it was before a refused launch: the previous file, or none
    (and then no experiment folder, when nothing else is in it)."""
    if before is not None:
        store.write_bytes(before, "sweep.yaml")
        return
    store.delete("sweep.yaml")
    import pyarrow.fs as pafs

    if not store.fs.get_file_info(pafs.FileSelector(store.root, allow_not_found=True, recursive=True)):
        store.fs.delete_dir(store.root)


def _drop_stray_states(store: Store, table: TrialsTable) -> None:
    """Delete the ``state.pt`` of finished trials. A driver killed between a trial's last
    commit and the deletion of its ``state.pt`` leaves the trial complete with the file, and
    no Tune trial runs for a complete trial again to delete it. (The table's listing of
    ``checkpoints/`` says which have one: no request per trial.)"""
    for trial_id, row in table.rows.items():
        if row.status in FINISHED and checkpoint.STATE in table.state.files.get(trial_id, ()):
            store.delete(*store.checkpoint_parts(trial_id, checkpoint.STATE))


def _compact(store: Store, table: TrialsTable, out) -> None:
    """Compact the trial tables' files of the finished trials (:mod:`sweep.compact`; once
    there are enough of them). Only finished trials: no trial of this launch writes them."""
    finished = {trial_id for trial_id, row in table.rows.items() if row.status in FINISHED}
    done = compact.compact_trial_tables(store, finished)
    if done:
        out(f"[{store.experiment}] compacted {compact.summary(done)}")


def _slots(resources: Dict[str, float], config: SweepConfig, trials: int) -> int:
    """How many trials fit on the cluster at once (never more than there are to train)."""
    fits = [int(resources.get("CPU", 0) // config.resources.cpus)]
    if config.resources.gpus > 0:
        fits.append(int(resources.get("GPU", 0) // config.resources.gpus))
    return max(0, min([*fits, trials]))


def resume(experiment: str, *, storage: Optional[str] = None, address: Optional[str] = None,
           data_root: Optional[str] = None, autoscale: bool = False, measure: bool = False,
           measure_families: Optional[str] = None, log: Optional[trackers.Trackers] = None,
           out=print) -> Dict[str, int]:
    store = Store(storage, experiment)
    config = read_resolved_config(store)
    return run(config, storage=store.storage, address=address, data_root=data_root, autoscale=autoscale,
               measure=measure, measure_families=measure_families, log=log, out=out)


def main_exit_code(counts: Dict[str, int]) -> int:
    """0 when every trial finished (completed or diverged), 1 when some failed or are missing."""
    unfinished = sum(v for k, v in counts.items() if k not in FINISHED)
    return 0 if unfinished == 0 else 1


def eprint(message: str) -> None:
    print(message, file=sys.stderr, flush=True)

"""Measures while the sweep runs: each model is measured as soon as its trial completes, in the
same Ray cluster, by the same tasks and commits as the separate job (:mod:`sweep.measure_job`).

``genzoo measure EXP --follow`` runs it beside a sweep (another process, on the same cluster);
``genzoo sweep run ... --measure`` runs it in the driver, next to Tune. At most ``in_flight``
measure tasks run at once (default 1, each 1 CPU): training keeps every other slot, and a
measure task waits for a free CPU like any Ray task, so it never takes a trial's.

Every poll reads the state of the whole experiment once (:class:`sweep.trials_table.TrialsTable`:
one read per table, not per trial) and plans the trials completed since the last poll with
:func:`sweep.measure_job.plan`, so a (model, family) already stored with the same settings is
never computed again: a follower killed and started again, or a separate ``genzoo measure`` run
afterwards, computes only what is missing. It ends when ``until()`` says the sweep ended (the
driver's Tune run returned) or, standing alone, when every trial has finished or failed and
every completed model is measured.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Callable, Dict, Optional, Sequence

from sweep import measure_job
from sweep.config import read_resolved_config
from sweep.store import COMPLETED, ERROR, FINISHED, Store
from sweep.trials_table import TrialsTable

POLL_SECONDS = 10.0


def follow(experiment: str, *, storage: Optional[str] = None, measures: Optional[str | Sequence[str]] = None,
           overrides: Sequence[str] = (), address: Optional[str] = None, data_root: Optional[str] = None,
           gpus_per_task: Optional[float] = None, in_flight: int = 1, poll_seconds: float = POLL_SECONDS,
           until: Optional[Callable[[], bool]] = None, out=print) -> Dict[str, int]:
    """Measure every model of ``experiment`` as its trial completes; returns the counts of
    (model, family) pairs by status, like :func:`sweep.measure_job.run`."""
    from sweep.cluster import connect_ray

    if not isinstance(in_flight, int) or isinstance(in_flight, bool) or in_flight < 1:
        raise measure_job.MeasureJobError(f"--in-flight: got {in_flight!r}, allowed: an integer >= 1")
    measure_job.gpus_for_tasks(None, gpus_per_task)
    store = Store(storage, experiment)
    sweep_config = read_resolved_config(store)  # imports the sweep's extensions first
    families = measure_job._families(measures, sweep_config.measure_families)
    settings = measure_job.resolve_settings(families, sweep_config.measures, overrides)
    configs = {c.trial_id: c for c in sweep_config.trials()}
    existing = store.measures()
    ray = connect_ray(address)
    gpus = measure_job.gpus_for_tasks(ray, gpus_per_task)
    collector = measure_job.Collector(store, existing, settings, out)
    planned: set = set()
    queue: deque = deque()
    pending: Dict = {}
    skipped = 0
    out(f"[measure {experiment}] following the sweep: each model is measured once its trial completes "
        f"(at most {in_flight} task{'s' if in_flight != 1 else ''} at once)")
    while True:
        ended = until() if until is not None else False  # read before the store: what follows is final
        table = TrialsTable(store, list(configs.values()))
        completed = [t for t, row in table.rows.items() if row.status == COMPLETED and t not in planned]
        if completed:
            models = [(t, m) for t in completed for m in table.state.models.get(t, ())]
            todo, counts = measure_job.plan(store, models, families, settings, {t: configs[t] for t in completed},
                                            existing=existing)
            skipped += counts["stored"]
            queue.extend((t, m, fams) for (t, m), fams in measure_job.by_model(todo).items())
            planned.update(completed)
        while queue and len(pending) < in_flight:
            t, m, fams = queue.popleft()
            ref = measure_job.submit(ray, store, configs[t], m, {f: settings[f] for f in fams}, gpus=gpus,
                                     data_root=data_root, extensions=sweep_config.extensions)
            pending[ref] = (t, m, fams)
        swept = all(row.status in FINISHED or row.status == ERROR for row in table.rows.values())
        if (ended or (until is None and swept)) and not completed and not queue and not pending:
            break
        if pending:
            collector.wait(ray, pending, timeout=poll_seconds)
        else:
            time.sleep(poll_seconds)
        if queue or pending or collector.finished:  # nothing to say while no trial has completed yet
            collector.progress(len(queue) + len(pending))
    collector.progress(0, force=True)
    if skipped:
        out(f"[measure {experiment}] {skipped} (model, family) pairs were already stored")
    measure_job._compact(store, planned, out)
    return dict(collector.counts)

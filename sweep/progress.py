"""The sweep's progress, from Tune's callbacks in the driver: ``trials.parquet`` kept current
(rewritten after every 1% of the trials finished or failed, or a minute, and at the end) and
one progress line at a time instead of Tune's tables."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional

from sweep import trial
from sweep.store import ERROR, FINISHED, RUNNING, Store
from sweep.trials_table import TrialsTable
from trainers.config import TrainConfig


def _trial_name(trial) -> str:
    return trial.config["trial"]["trial_id"]


# The driver's TrialsTable, handed to its Tune callback in the same process (the callback
# object itself is pickled by Tune, the table stays here); a callback that finds none rebuilds
# it from the store.
_SHARED: Dict[str, TrialsTable] = {}
# trials.parquet is rewritten after this share of the trials changed (or WRITE_SECONDS passed):
# about 100 rewrites per launch, not one per trial (each rewrite is O(trials)).
WRITE_SHARE = 0.01
WRITE_SECONDS = 60.0


def share_table(table: TrialsTable) -> str:
    token = uuid.uuid4().hex
    _SHARED[token] = table
    return token


def _tune_callback_class():
    from ray import tune

    class StoreProgress(tune.Callback):
        """Keeps ``trials.parquet`` current and prints one progress line at a time instead of
        Tune's tables. In ``setup`` it takes the driver's table (``table``: a token of
        :func:`share_table`) or rebuilds it from the store, so it survives the pickling of
        Tune's experiment state."""

        # The clock of a trial's start and end (a test sets its own).
        clock = staticmethod(time.monotonic)

        def __init__(self, storage: str, experiment: str, config_dicts: List[Dict[str, Any]], every: float = 10.0,
                     table: Optional[str] = None):
            self.storage, self.experiment, self.config_dicts, self.every = storage, experiment, config_dicts, every
            self.shared = table

        def setup(self, **info):
            self.store = Store(self.storage, self.experiment)
            self.table = _SHARED.pop(self.shared, None) if self.shared else None
            if self.table is None:
                self.table = TrialsTable(self.store, [TrainConfig.from_dict(c) for c in self.config_dicts])
            self.started = time.monotonic()
            self.live_epochs: Dict[str, int] = {}
            self.pace = Pace()
            self.most_running = 0  # the most Tune trials seen running at once: the sweep's parallelism
            # Per Tune trial (a grid point or a pack): when it started, and its epochs' seconds,
            # for the start-up and commit time the epochs do not show (Pace.add_overhead).
            self.started_at: Dict[str, float] = {}
            self.epoch_seconds: Dict[str, float] = {}
            self.last_print = 0.0
            self.write_every = max(1, int(WRITE_SHARE * len(self.table.rows)))
            self._write()

        def on_trial_result(self, iteration, trials, trial, result, **info):
            # Tune overwrites result["trial_id"] with its own id; ours is in the config.
            trial_id = result.get("genzoo_trial_id")
            if trial_id in self.table.rows:
                self.table.mark_running(trial_id)
                self.live_epochs[trial_id] = int(result.get("epoch", 0))
                seconds = result.get("epoch_seconds")
                if seconds is not None and seconds == seconds:
                    # A pack's epoch trains all its models: each model's share of it.
                    self.pace.add(self.table.rows[trial_id].config, seconds / len(trial.config["trial"]["trial_ids"]))
                    self.epoch_seconds[trial.trial_id] = self.epoch_seconds.get(trial.trial_id, 0.0) + seconds
            self._maybe_print(trials)

        def on_trial_start(self, iteration, trials, trial, **info):
            # Tune calls this again when it restarts a failed trial: measure the last attempt.
            self.started_at[trial.trial_id] = self.clock()
            self.epoch_seconds[trial.trial_id] = 0.0

        def on_trial_complete(self, iteration, trials, trial, **info):
            # No line here: at this instant the slot the trial held is always empty (Tune
            # starts the next trial a step later), so every such line would show a slot idle.
            started = self.started_at.pop(trial.trial_id, None)
            if started is not None:
                beyond = self.clock() - started - self.epoch_seconds.pop(trial.trial_id, 0.0)
                self.pace.add_overhead(max(0.0, beyond) / len(trial.config["trial"]["trial_ids"]))
            self._finish(trial)

        def on_trial_error(self, iteration, trials, trial, **info):
            self.started_at.pop(trial.trial_id, None)  # its time is not a finished trial's
            self.epoch_seconds.pop(trial.trial_id, None)
            self._finish(trial, error=_last_error_line(trial))
            self._print(trials)

        def on_step_end(self, iteration, trials, **info):
            self._maybe_print(trials)

        def on_experiment_end(self, trials, **info):
            self._write()
            self._print(trials)

        def _finish(self, trial, error: Optional[str] = None):
            for trial_id in trial.config["trial"]["trial_ids"]:  # one grid point, or a pack
                self.live_epochs.pop(trial_id, None)
                self.table.refresh(trial_id, error=error)
                self.unwritten += 1
            if self.unwritten >= self.write_every or time.monotonic() - self.last_write >= WRITE_SECONDS:
                self._write()

        def _write(self):
            self.table.write()
            self.unwritten, self.last_write = 0, time.monotonic()

        def _maybe_print(self, trials):
            if time.monotonic() - self.last_print >= self.every:
                self._print(trials)

        def _print(self, trials):
            self.last_print = time.monotonic()
            rows = self.table.rows.values()
            done = sum(r.status in FINISHED for r in rows)
            failed = sum(r.status == ERROR for r in rows)
            # Models on a slot now, from Tune's own trial states: a trial that has started
            # counts before its first epoch is reported.
            running = sum(len(t.config["trial"]["trial_ids"]) for t in trials if t.status == "RUNNING")
            epochs_total = sum(trial.total_epochs(r.config) for r in rows)
            epochs_done = sum(
                trial.total_epochs(r.config) if r.status in FINISHED
                else max(self.live_epochs.get(r.config.trial_id, 0), r.epochs_done)
                for r in rows
            )
            elapsed = time.monotonic() - self.started
            left, bound = epochs_left(rows, self.live_epochs)
            waiting = sum(1 for r in rows if r.status not in FINISHED and r.status not in (ERROR, RUNNING))
            # A slot is a Tune trial (a pack trains its models as one: the models' shares of its
            # epochs add up to the pack's wall time). Between two short trials a slot is briefly
            # empty: the parallelism is the most trials seen running at once (or what is left, at
            # the end), not this instant's count.
            busy = sum(1 for t in trials if t.status == "RUNNING")
            self.most_running = max(self.most_running, busy)
            slots = max(busy, min(self.most_running, len(left)))
            seconds = self.pace.remaining_seconds(left, slots=slots, starts=waiting)
            eta = "?" if seconds is None else bound + _duration(seconds)
            print(
                f"[{self.experiment}] trials {done}/{len(self.table.rows)} done, {running} running, "
                f"{failed} failed | epochs {epochs_done}/{epochs_total} | "
                f"elapsed {_duration(elapsed)}, ETA {eta}",
                flush=True,
            )

    return StoreProgress


def epochs_left(rows, live_epochs: Dict[str, int]):
    """Each unfinished trial's (config, epochs it has left), and how to read an ETA from them:
    "" (exact), "~" (an estimate) or "<=" (a bound). A trial that stops at a target loss is
    expected to stop where the finished ones did on average ("~"); until one has finished, at
    its cap ("<=")."""
    rows = list(rows)
    stopped = [r.epochs_done for r in rows if r.status in FINISHED and r.config.stop_at_train_loss is not None]
    typical = sum(stopped) / len(stopped) if stopped else None
    left, bound = [], ""
    for r in rows:
        if r.status in FINISHED or r.status == ERROR:
            continue
        done = max(live_epochs.get(r.config.trial_id, 0), r.epochs_done)
        cap = trial.total_epochs(r.config)
        if r.config.stop_at_train_loss is not None:
            if typical is None:
                bound = "<="
            else:
                cap, bound = min(cap, max(done + 1, round(typical))), bound or "~"
        left.append((r.config, max(0, cap - done)))
    return left, bound


def architecture(config: TrainConfig) -> tuple:
    """What sets the time of an epoch: the data, the network and the batch size."""
    return (config.dataset, config.train_size, config.model, config.width, config.depth, config.batch_size)


class Pace:
    """Seconds per epoch measured per architecture (:func:`architecture`), for an ETA from the
    epochs each trial has left rather than from the elapsed time (which counts Ray's start
    and every trial's start-up, and made a first ETA of 1h21m for a sweep of 7 minutes); and
    each finished trial's time beyond its epochs (its worker's start, loading the data,
    evaluating and committing its checkpoints), which every trial not yet started will spend
    too: with trials of a few seconds it is most of the time left."""

    def __init__(self) -> None:
        self.sums: Dict[tuple, List[float]] = {}
        self.overhead = [0.0, 0]

    def add_overhead(self, seconds: float) -> None:
        """One finished model's wall time beyond its epochs (a pack's, shared by its models)."""
        self.overhead[0] += float(seconds)
        self.overhead[1] += 1

    def overhead_per_trial(self) -> float:
        """The mean of :meth:`add_overhead`; 0 before a trial finished."""
        return self.overhead[0] / self.overhead[1] if self.overhead[1] else 0.0

    def add(self, config: TrainConfig, seconds: float) -> None:
        total = self.sums.setdefault(architecture(config), [0.0, 0])
        total[0] += float(seconds)
        total[1] += 1

    def per_epoch(self, config: TrainConfig) -> Optional[float]:
        """The mean measured for its architecture; else the mean of every architecture measured
        (None before any epoch)."""
        total = self.sums.get(architecture(config))
        if total:
            return total[0] / total[1]
        measured = [s / n for s, n in self.sums.values()]
        return sum(measured) / len(measured) if measured else None

    def remaining_seconds(self, left, *, slots: int, starts: int = 0) -> Optional[float]:
        """Wall seconds to train ``left`` ((config, epochs left) pairs) on ``slots`` Tune trials at
        once (a pack is one: its models' shares of an epoch add up to its epoch), ``starts`` of
        the models not started yet (each adding the measured overhead per model); None before any
        epoch was measured."""
        if not self.sums:
            return None
        work = sum(epochs * self.per_epoch(config) for config, epochs in left if epochs > 0)
        return (work + starts * self.overhead_per_trial()) / max(1, slots)


def _last_error_line(trial) -> str:
    path = trial.error_file
    if path and os.path.exists(path):
        lines = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
        if lines:
            return lines[-1][:500]
    return "trial failed (no error file)"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"

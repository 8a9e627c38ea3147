"""The record of each launch of a sweep: its Tune run folder ``_tune/run-<n>`` and, in it,
the launch's slot utilization (``genzoo_launch.json``), which ``sweep status`` reports."""

from __future__ import annotations

import json
from typing import Dict, Optional

from sweep.store import Store

TUNE_DIR = "_tune"
LAUNCH_FILE = "genzoo_launch.json"


def slot_utilization(training_seconds: float, wall_seconds: float, slots: int) -> Dict[str, float]:
    """Slot utilization of a launch: Σ trial training seconds / (wall × slots), where the
    training seconds are the epochs' own wall times recorded in the store (training and
    evaluation, what a trial spends in the loop) and the slots are how many trials the
    cluster can run at once. 1 means every slot trained all the time; the rest is trial
    start-up, data loading, store writes and idle slots."""
    value = training_seconds / (wall_seconds * slots) if wall_seconds > 0 and slots > 0 else float("nan")
    return {"training_seconds": training_seconds, "wall_seconds": wall_seconds, "slots": slots,
            "utilization": value}


def utilization_text(launch: Dict[str, float]) -> str:
    return (f"slot utilization {100 * launch['utilization']:.0f}% "
            f"({launch['training_seconds']:.0f} trial training seconds / ({launch['wall_seconds']:.0f} s wall "
            f"x {int(launch['slots'])} slots))")


def next_run_name(store: Store) -> str:
    """``run-<n>`` one past the highest Tune run of this experiment."""
    import pyarrow.fs as pafs

    infos = store.fs.get_file_info(pafs.FileSelector(store.path(TUNE_DIR), allow_not_found=True))
    numbers = [int(i.base_name[4:]) for i in infos
               if i.type == pafs.FileType.Directory and i.base_name.startswith("run-") and i.base_name[4:].isdigit()]
    return f"run-{max(numbers, default=0) + 1}"


def last_launch(store: Store) -> Optional[Dict[str, float]]:
    """The utilization record of the experiment's latest Tune run, if any."""
    name = next_run_name(store)
    latest = f"run-{int(name[4:]) - 1}"
    if not store.exists(TUNE_DIR, latest, LAUNCH_FILE):
        return None
    return json.loads(store.read_text(TUNE_DIR, latest, LAUNCH_FILE))


def record_launch(store: Store, run_name: str, utilization: Dict[str, float]) -> None:
    store.write_text(json.dumps(utilization, sort_keys=True), TUNE_DIR, run_name, LAUNCH_FILE)

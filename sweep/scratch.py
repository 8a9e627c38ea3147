"""Scratch folders of trials: a trial trains in a local folder of ``$TMPDIR`` and commits from
there to the store (:mod:`sweep.trial`).

A folder is removed when its trial ends, whatever the outcome. A trial whose process is
killed (SIGKILL of its worker or of the driver, a node's OOM killer) cannot remove its own, so
each folder's name carries its owner: ``genzoo-<trial_id>-<pid>.<start>-<random>``, with the
pid and the start time of the process that made it (the start time tells a process from a
later one that reused its pid). :func:`reap` removes the folders of owners that no longer run;
every trial start and every launch of the driver calls it, so nothing is left after a kill
and a resume. Folders of a live owner, and any other name, are never touched.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import List, Optional

PREFIX = "genzoo-"
_OWNED = re.compile(r"^genzoo-(?P<trial>.+)-(?P<pid>\d+)\.(?P<start>\d+)-[A-Za-z0-9_]+$")


def start_time(pid: int) -> Optional[str]:
    """The process's start time in clock ticks since boot (None when it does not exist)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def make(trial_id: str) -> Path:
    """A new scratch folder for ``trial_id``, named after this process (see the module docstring)."""
    pid = os.getpid()
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{trial_id}-{pid}.{start_time(pid) or 0}-"))


def reap(folder: Optional[str] = None, *, wait_for_younger: float = 0.0) -> List[Path]:
    """Remove the scratch folders in ``folder`` (default: ``$TMPDIR``) whose owner no longer
    runs; returns them. Without ``/proc`` (not Linux) nothing is removed.

    ``wait_for_younger``: seconds to wait, in all, for owners started after this process (the
    workers of the Ray this driver just stopped, which take a moment to exit) before leaving
    their folders to the next launch."""
    if not Path("/proc/self/stat").exists():
        return []
    removed = _reap_once(folder)
    deadline = time.monotonic() + wait_for_younger
    while time.monotonic() < deadline and _younger_owners(folder):
        time.sleep(0.2)
        removed += _reap_once(folder)
    return removed


def _younger_owners(folder: Optional[str]) -> bool:
    mine = int(start_time(os.getpid()) or 0)
    root = Path(folder or tempfile.gettempdir())
    try:
        names = [entry.name for entry in root.iterdir()]
    except OSError:
        return False
    for name in names:
        match = _OWNED.match(name)
        if match and start_time(int(match["pid"])) == match["start"] and int(match["start"]) >= mine:
            return True
    return False


def _reap_once(folder: Optional[str]) -> List[Path]:
    root = Path(folder or tempfile.gettempdir())
    removed = []
    try:
        entries = list(root.iterdir())
    except OSError:
        return []
    for entry in entries:
        match = _OWNED.match(entry.name)
        if match is None or not entry.is_dir():
            continue
        if start_time(int(match["pid"])) == match["start"]:
            continue  # its owner still runs
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed

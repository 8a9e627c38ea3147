"""Ending the processes of an embedded Ray whose driver is gone (standard library only).

A driver that starts its own local Ray (``ray.init()`` without an address) owns a gcs_server,
a raylet, the dashboard and runtime-env agents, a log monitor and the workers. When the driver
dies without shutting Ray down (SIGKILL, the OOM killer), Ray's agents outlive it for a long
time, reparented to init. Each such driver therefore records its Ray (a JSON record: the
driver's pid and start time, the session name, the pids and start times of Ray's processes)
and starts a watchdog, ``python -m sweep.reaper RECORD``, in a session of its own (so a kill
of the driver's process group spares it): the watchdog polls the driver every
:data:`POLL_S` seconds and, once it is gone, SIGKILLs the recorded processes that still run
(same pid *and* start time) and every process whose command line or open files name the
session, then removes the record and exits. A driver killed while Ray starts (before its
session is known) is covered by the session name Ray gives itself,
``session_<date>_<time>_<driver pid>``, stamped after the record was made. A driver that shuts
its Ray down removes its record, and its watchdog then ends nothing. :func:`reap_records` does the same for every record
whose driver is dead, at the next start of an embedded Ray (a watchdog that was itself killed).
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Set

POLL_S = 0.5


def start_time(pid: int) -> Optional[str]:
    """The process's start time in clock ticks since boot (None when it does not exist):
    with the pid, it tells a process from a later one that reused its pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _names(pid: int) -> Iterable[str]:
    """The process's command line, then the targets of its open files."""
    try:
        yield Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                yield os.readlink(fd)
            except OSError:
                continue
    except OSError:
        return


def mentions(pid: int, text: str) -> bool:
    """Whether the process's command line or one of its open files names ``text``. Ray's
    agents retitle themselves (``ray::DashboardAgent``) but keep their session's log files open."""
    return any(text in name for name in _names(pid))


def _sessions_named(pid: int, pattern: "re.Pattern[str]") -> Iterable[str]:
    for name in _names(pid):
        yield from (m.group(1) for m in pattern.finditer(name))


def session_stamp() -> str:
    """Now, as Ray stamps a session it starts (``session_<this>_<pid>``), for comparisons."""
    import datetime

    return datetime.datetime.today().strftime("%Y-%m-%d_%H-%M-%S_%f")


def owner_alive(record: Dict) -> bool:
    start = record.get("owner_start")
    return start is not None and start_time(int(record["owner"])) == start


def targets(record: Dict) -> Set[int]:
    """The live processes of a record's Ray: recorded ones still running with their recorded
    start time, and those naming its session (or, with no session recorded yet, a session Ray
    named after the record's driver and started after the record was made)."""
    found = {int(pid) for pid, start in record.get("processes", {}).items()
             if start is not None and start_time(int(pid)) == start}
    session = record.get("session") or ""
    if session.startswith("session_"):
        match = lambda pid: mentions(pid, session)  # noqa: E731
    else:
        pattern = re.compile(rf"session_(\d{{4}}-\d\d-\d\d_\d\d-\d\d-\d\d_\d+)_{int(record['owner'])}(?![0-9])")
        made = record.get("created") or "9"
        match = lambda pid: any(stamp >= made for stamp in _sessions_named(pid, pattern))  # noqa: E731
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and match(int(entry.name)):
            found.add(int(entry.name))
    return found - {os.getpid(), int(record["owner"])}


def kill(pids: Iterable[int]) -> List[int]:
    killed = []
    for pid in sorted(pids):
        try:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        except (ProcessLookupError, PermissionError):
            pass
    return killed


def reap_records(folder: Path) -> List[int]:
    """SIGKILL the processes of every recorded embedded Ray whose driver is dead and remove
    those records; returns the pids signalled."""
    killed: List[int] = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if owner_alive(record):
            continue
        killed += kill(targets(record))
        path.unlink(missing_ok=True)
    return killed


def watch(path: Path) -> None:
    """Wait for the driver of the record at ``path`` to die, then end its Ray. The record is
    read again then: the driver completes it once Ray has started, and removes it when it
    shuts Ray down itself (then there is nothing to do)."""
    record = json.loads(path.read_text())
    while owner_alive(record):
        time.sleep(POLL_S)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    # Two passes: a worker Ray was starting at the first may show up a moment later.
    for _ in range(2):
        kill(targets(record))
        time.sleep(POLL_S)
    path.unlink(missing_ok=True)


if __name__ == "__main__":
    watch(Path(sys.argv[1]))

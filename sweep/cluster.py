"""Connecting to Ray and checking, before anything is written, that the cluster can ever run
what a sweep or a measures job asks for."""

from __future__ import annotations

import json
import logging
import os
import signal
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

from sweep.config import SweepConfigError


def connect_ray(address: Optional[str] = None):
    """Use the Ray already initialized in this process, else connect to ``address``, else
    start an embedded local Ray."""
    import ray

    if ray.is_initialized():
        return ray
    if address:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    else:
        reap_orphaned_rays()
        temp_dir = os.environ.get(ENV_RAY_TEMP_DIR) or None
        ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING, _temp_dir=temp_dir)
        _record_embedded_ray(ray)
    return ray


# An embedded Ray's processes (gcs_server, raylet, the dashboard and runtime-env agents, the
# log monitor) outlive a driver killed with SIGKILL, reparented to init. Each driver that
# starts one records it here; the next genzoo start that starts one ends those whose driver
# is gone.
ENV_RAY_TEMP_DIR = "GENZOO_RAY_TEMP_DIR"  # Ray's --temp-dir for an embedded Ray (default: Ray's)


def records_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"genzoo-{os.getuid()}" / "embedded-ray"


def _start_time(pid: int) -> Optional[str]:
    """The process's start time in clock ticks since boot (None when it does not exist):
    with the pid, it tells a process from a later one that reused its pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def mentions(pid: int, text: str) -> bool:
    """Whether the process's command line or one of its open files names ``text``. Ray's
    agents retitle themselves (``ray::DashboardAgent``) but keep their session's log files open."""
    try:
        if text in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
            return True
        return any(text in os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False


def _record_embedded_ray(ray) -> None:
    try:
        node = ray._private.worker._global_node
        pids = [info.process.pid for infos in node.all_processes.values() for info in infos if info.process]
        record = {"owner": os.getpid(), "owner_start": _start_time(os.getpid()),
                  "session": os.path.basename(node.get_session_dir_path()),
                  "processes": {str(pid): _start_time(pid) for pid in pids}}
        folder = records_dir()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{os.getpid()}.json"
        path.write_text(json.dumps(record))
    except Exception:  # best effort: a Ray without these internals is simply not recorded
        return
    import atexit

    atexit.register(lambda: path.unlink(missing_ok=True))


def reap_orphaned_rays() -> List[int]:
    """SIGKILL the processes of embedded Rays whose recording driver is dead: the recorded
    pids that still run with their recorded start time, and any process naming the recorded
    session. Returns the pids signalled."""
    folder = records_dir()
    killed: List[int] = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if record.get("owner_start") is not None and _start_time(int(record["owner"])) == record["owner_start"]:
            continue  # its driver still runs
        session = record.get("session") or ""
        targets = {int(pid) for pid, start in record.get("processes", {}).items()
                   if start is not None and _start_time(int(pid)) == start}
        if session.startswith("session_"):
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit() and mentions(int(entry.name), session):
                    targets.add(int(entry.name))
        for pid in sorted(targets - {os.getpid()}):
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except (ProcessLookupError, PermissionError):
                pass
        path.unlink(missing_ok=True)
    return killed


def check_cluster(available: Dict[str, float], *, cpus: float, gpus: float, what: str, gpu_field: str,
                  gpu_flag: str, autoscale: bool = False) -> Optional[str]:
    """Whether a cluster whose current total resources are ``available`` (``ray.cluster_resources()``)
    can ever run a task of ``cpus`` CPUs and ``gpus`` GPUs. Raises one line naming
    ``gpu_field`` (the field or flag that asked for GPUs; ``gpu_flag`` is the flag that changes
    it) when it cannot: Tune and Ray would otherwise wait forever on an infeasible request.

    With ``autoscale`` the cluster may still add nodes (the launcher's or KubeRay's
    autoscaler), so nothing is refused: the return value is a warning to print when the
    resources are not there yet, else None.
    """
    missing = []
    if gpus > 0 and available.get("GPU", 0) <= 0:
        missing.append((gpu_field, f"{gpus:g} GPU per {what} requested but the Ray cluster has no GPU",
                        f"use {gpu_flag} 0"))
    if available.get("CPU", 0) < cpus:
        missing.append(("resources.cpus", f"{cpus:g} CPUs per {what} but the Ray cluster has "
                        f"{available.get('CPU', 0):g} CPUs", "lower resources.cpus"))
    if not missing:
        return None
    if autoscale:
        return "; ".join(f"{field}: {problem} yet" for field, problem, _ in missing) + \
            f"; each {what} waits until the autoscaler adds a node that has them"
    field, problem, fix = missing[0]
    raise SweepConfigError(f"{field}: {problem} ({fix}, or --autoscale if the cluster adds nodes on demand)")

"""Connecting to Ray and checking, before anything is written, that the cluster can ever run
what a sweep or a measures job asks for."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

from sweep import reaper
from sweep.config import SweepConfigError


def connect_ray(address: Optional[str] = None):
    """Use the Ray already initialized in this process, else connect to ``address``, else
    start an embedded local Ray (recorded, and watched by :mod:`sweep.reaper`)."""
    import ray

    if ray.is_initialized():
        return ray
    ray_logs_to_file()
    if address:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    else:
        reap_orphaned_rays()
        record = _start_watchdog()
        temp_dir = os.environ.get(ENV_RAY_TEMP_DIR) or None
        ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING, _temp_dir=temp_dir)
        _record_embedded_ray(ray, record)
    return ray


def log_file() -> Path:
    """Where the driver's Ray and Tune log lines go (``GENZOO_LOG`` or a file under the
    temporary folder): genzoo prints its own progress and one-line errors; Ray's notices (token
    authentication, `Tuner.restore` hints, metrics export) are for debugging Ray."""
    return Path(os.environ.get(ENV_LOG) or Path(tempfile.gettempdir()) / f"genzoo-{os.getuid()}" / "ray-driver.log")


def ray_logs_to_file() -> Path:
    """Send the ``ray`` loggers of this process (Tune's included) to :func:`log_file` instead
    of the console; returns the file."""
    path = log_file()
    root = logging.getLogger("ray")
    if any(isinstance(h, logging.FileHandler) and h.baseFilename == str(path.resolve()) for h in root.handlers):
        return path  # a second embedded Ray in this process: the file is there already
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("ray", "ray.tune", "ray.train", "ray.data"):
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if isinstance(h, logging.StreamHandler)
                    and not isinstance(h, logging.FileHandler)]:
            logger.removeHandler(old)
        logger.propagate = name != "ray"  # the children reach the file through "ray"
    root.addHandler(handler)
    return path


def stop_ray() -> None:
    """Disconnect from Ray if this process connected: an embedded Ray stops with its processes,
    and on a cluster the job's trials and tasks end with their driver."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


# An embedded Ray's processes (gcs_server, raylet, the dashboard and runtime-env agents, the
# log monitor) outlive a driver killed with SIGKILL, reparented to init. Each driver that
# starts one records it here and starts a watchdog that ends them once the driver is gone
# (sweep/reaper.py); the next genzoo start that starts one ends those of any record whose
# driver and watchdog are both gone.
ENV_RAY_TEMP_DIR = "GENZOO_RAY_TEMP_DIR"  # Ray's --temp-dir for an embedded Ray (default: Ray's)
ENV_LOG = "GENZOO_LOG"  # the file of the driver's Ray and Tune log lines

_start_time = reaper.start_time
mentions = reaper.mentions


def records_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"genzoo-{os.getuid()}" / "embedded-ray"


def _start_watchdog() -> Optional[Path]:
    """Write this driver's record (its Ray not started yet) and start its watchdog, in a
    session of its own; None when that is not possible here (no /proc)."""
    if _start_time(os.getpid()) is None:
        return None
    try:
        folder = records_dir()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{os.getpid()}.json"
        path.write_text(json.dumps({"owner": os.getpid(), "owner_start": _start_time(os.getpid()),
                                    "created": reaper.session_stamp(), "session": None, "processes": {}}))
        subprocess.Popen([sys.executable, "-m", "sweep.reaper", str(path)], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                         close_fds=True, cwd=str(Path(__file__).resolve().parents[1]))
    except OSError:
        return None
    import atexit

    # A clean exit shuts Ray down itself: the record goes first (atexit runs last-in first),
    # which tells the watchdog that there is nothing to end.
    atexit.register(lambda: path.unlink(missing_ok=True))
    return path


def _record_embedded_ray(ray, path: Optional[Path]) -> None:
    """Complete the record with the session and the pids of the Ray just started."""
    if path is None:
        return
    try:
        node = ray._private.worker._global_node
        pids = [info.process.pid for infos in node.all_processes.values() for info in infos if info.process]
        record = json.loads(path.read_text())
        record.update(session=os.path.basename(node.get_session_dir_path()),
                      processes={str(pid): _start_time(pid) for pid in pids})
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, path)
    except Exception:  # best effort: the watchdog then finds the session by its name
        return


def reap_orphaned_rays() -> List[int]:
    """SIGKILL the processes of embedded Rays whose recording driver is dead: the recorded
    pids that still run with their recorded start time, and any process naming the recorded
    session. Returns the pids signalled."""
    return reaper.reap_records(records_dir())


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

"""Connecting to Ray and checking, before anything is written, that the cluster can ever run
what a sweep or a measures job asks for."""

from __future__ import annotations

import logging
from typing import Dict, Optional

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
        ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    return ray


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

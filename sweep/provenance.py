"""Where and with what a sweep ran: genzoo's version and git commit, every dependency's
version, the device, the host and the time. ``sweep.yaml`` records it under ``provenance:``
(and the versions, as before, under ``versions:``); every epoch row records its host, device
and finish time, and ``trials.parquet`` derives each trial's from them (``docs/store.md``).
"""

from __future__ import annotations

import datetime
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, Optional

# Distribution names on PyPI, reported under these keys.
DEPENDENCIES = {
    "torch": "torch", "ray": "ray", "numpy": "numpy", "pandas": "pandas", "pyarrow": "pyarrow",
    "scipy": "scipy", "scikit-learn": "scikit-learn", "matplotlib": "matplotlib", "pyyaml": "PyYAML",
}
GIT_TIMEOUT_S = 5.0
REPO_ROOT = Path(__file__).resolve().parent.parent


def now() -> datetime.datetime:
    """The current time in UTC, to the microsecond (what the timestamp columns hold)."""
    return datetime.datetime.now(datetime.timezone.utc)


def host() -> str:
    return socket.gethostname()


def _version(distribution: str) -> Optional[str]:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def versions() -> Dict[str, Optional[str]]:
    """python and every dependency's installed version (None when one is not installed)."""
    return {"python": platform.python_version(), **{k: _version(d) for k, d in DEPENDENCIES.items()}}


def git_commit(root: Path = REPO_ROOT) -> Optional[str]:
    """``git rev-parse HEAD`` of the checkout genzoo runs from; None outside a checkout, without
    git, or when git does not answer within :data:`GIT_TIMEOUT_S`."""
    if not (root / ".git").exists():
        return None
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and commit else None


def device_name(device: Any = None) -> str:
    """``cpu (<processor>)``, or ``cuda:<i> <GPU name> (CUDA <version>)`` for a CUDA device;
    with no device, the first GPU when there is one, else the CPU."""
    import torch

    device = torch.device(device) if device is not None else (
        torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu"))
    if device.type == "cuda":
        index = device.index if device.index is not None else 0
        return f"cuda:{index} {torch.cuda.get_device_name(index)} (CUDA {torch.version.cuda})"
    return f"{device.type} ({platform.processor() or platform.machine()})"


def sweep_provenance(started_at: datetime.datetime, finished_at: Optional[datetime.datetime] = None) -> Dict[str, Any]:
    """The ``provenance:`` block of sweep.yaml: of the driver's machine and run."""
    block: Dict[str, Any] = {"genzoo": _version("genzoo")}
    commit = git_commit()
    if commit:
        block["git_commit"] = commit
    block.update({
        "host": host(), "device": device_name(), "platform": platform.platform(),
        "started_at": started_at.isoformat(), "finished_at": finished_at.isoformat() if finished_at else None,
    })
    return block


def recorded(store) -> Dict[str, Any]:
    """What an experiment's sweep.yaml records of its last launch (a :class:`sweep.store.Store`):
    the ``provenance:`` block with the ``versions:`` under ``versions`` (empty when the store
    predates them)."""
    from trainers import yamlio

    if not store.exists("sweep.yaml"):
        return {}
    document = yamlio.load(store.read_text("sweep.yaml"), f"{store.uri}/sweep.yaml", allow_empty=True) or {}
    return {**(document.get("provenance") or {}), "versions": document.get("versions") or {}}

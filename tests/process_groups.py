"""Stopping a daemon the tests started in a process group of its own."""

import os
import signal
import subprocess


def stop_group(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM to its group (a clean shutdown: `ray start --block`, slurmd), up to ``timeout``
    seconds to exit, then SIGKILL to whatever is left in the group."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()

import os

import pytest

# Local test clusters need no token; the subprocess drivers of the tests inherit this.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# torch on one thread in the test process and everything it starts, set before torch is
# imported: module- and session-scoped fixtures run before the function-scoped ``one_thread``,
# and on a loaded machine an OpenMP pool of spinning threads made one such fixture (the dense
# Hessian of tests/measures/test_flatness_defaults.py) take 616 s instead of 10 (issue 23).
# Nothing tested depends on the thread count; a Ray trial sets its own (resources.cpus).
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def ray_address():
    """One real local Ray (2 CPUs) for the whole test run; yields its address so that
    subprocess drivers can connect to the same cluster. Its workers (and the subprocess
    drivers) get a $TMPDIR of their own, where the chaos test checks that no scratch folder
    of a killed trial is left (:func:`ray_tmpdir`)."""
    import shutil
    import tempfile

    import ray

    saved = os.environ.get("TMPDIR")
    # Short and under /tmp: Ray's own folder may go there too, and its socket paths are limited.
    os.environ["TMPDIR"] = tempfile.mkdtemp(prefix="gzt", dir="/tmp")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        shutil.rmtree(os.environ["TMPDIR"], ignore_errors=True)
        if saved is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved


@pytest.fixture
def ray_tmpdir(ray_address):
    """The $TMPDIR of the session Ray's workers."""
    from pathlib import Path

    return Path(os.environ["TMPDIR"])


@pytest.fixture
def one_thread():
    """torch on one thread for the test. The test machine's cores are shared; one thread per
    test process avoids oversubscribing them (several times slower otherwise), and nothing
    tested depends on the thread count."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

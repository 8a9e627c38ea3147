import os

import pytest

# Local test clusters need no token; the subprocess drivers of the tests inherit this.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


@pytest.fixture(scope="session")
def ray_address():
    """One real local Ray (2 CPUs) for the whole test run; yields its address so that
    subprocess drivers can connect to the same cluster."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


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

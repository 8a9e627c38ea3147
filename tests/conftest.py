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

import pytest


@pytest.fixture(autouse=True)
def measures_on_one_thread(one_thread):
    """Every measure test runs torch on one thread (see ``one_thread`` in tests/conftest.py)."""
    yield

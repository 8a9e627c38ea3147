import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    # The test machine's cores are shared; one thread per test process avoids oversubscribing
    # them (several times slower otherwise), and every measure is defined independently of it.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

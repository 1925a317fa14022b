import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    # the machine's 2 cores are shared: 2 threads under contention are ~10x slower for these tiny models
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

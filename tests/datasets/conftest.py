import pytest


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny-batch inference is fastest on one thread, and the test machine's cores are shared."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

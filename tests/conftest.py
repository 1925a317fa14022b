import os

import pytest

# Physics-only tests must not need a display; rendering tests use EGL (headless, CPU).
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    # Tests use tiny models: on 2 shared cores two threads are slower, not faster, and one is deterministic.
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

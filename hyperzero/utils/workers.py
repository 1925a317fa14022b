"""Local worker processes: how many threads each gets, and that none outlives the process that started it."""
from __future__ import annotations

import os


def default_threads(workers: int) -> int:
    """Torch threads per worker when `workers` processes share this machine's cores."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def exit_with_parent(parent_pid: int, poll_seconds: float = 2.0) -> None:
    """Make this worker stop when the process that started it dies (e.g. SIGKILL): no orphans keep computing.

    The worker's last checkpoint stays valid, so rerunning the parent's command resumes from it.
    """
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_seconds)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()

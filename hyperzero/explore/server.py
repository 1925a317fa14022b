"""Serving the explore page with uvicorn: in the foreground (the CLI) or on a background thread.

    from hyperzero.explore import ExploreConfig, running_server
    with running_server("runs/tiny", ExploreConfig(port=0)) as url:
        print(url)          # http://127.0.0.1:<free port>/ until the block ends
"""
from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

from hyperzero.explore.config import ExploreConfig

START_TIMEOUT_S = 30.0


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: a free one), so the address is known before the server starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ValueError(f"cannot listen on {host}:{port} ({e.strerror or e}); choose another --port "
                         f"(0 picks a free one) or --host") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def _prepare(run_dir: str | Path, config: ExploreConfig):
    import torch

    from hyperzero.explore.run import ExploreRun

    config.check()
    run = ExploreRun(run_dir)  # a bad run directory is reported before a missing web extra
    from hyperzero.explore.app import create_app

    torch.set_num_threads(config.torch_threads)
    return create_app(run, config)


def _server(app, sock: socket.socket, quiet: bool):
    import uvicorn

    host, port = sock.getsockname()[:2]
    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning" if quiet else "info",
                                         access_log=not quiet, timeout_graceful_shutdown=2))


def serve(run_dir: str | Path, config: ExploreConfig | None = None, quiet: bool = False,
          announce: Callable[[str], None] = print) -> None:
    """Open the run, bind, announce the address, and serve until interrupted (Ctrl-C)."""
    config = config or ExploreConfig()
    app = _prepare(run_dir, config)
    sock = bind(config.host, config.port)
    announce(address(sock))
    _server(app, sock, quiet).run(sockets=[sock])


@contextlib.contextmanager
def running_server(run_dir: str | Path, config: ExploreConfig | None = None) -> Iterator[str]:
    """Serve on a background thread for the duration of the block; yields the page's address."""
    config = config or ExploreConfig(port=0)
    app = _prepare(run_dir, config)
    sock = bind(config.host, config.port)
    server = _server(app, sock, quiet=True)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="hyperzero-explore", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the explore server did not start")
        time.sleep(0.02)
    try:
        yield address(sock)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()

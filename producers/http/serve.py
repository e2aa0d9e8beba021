"""``gonets api``: uvicorn serving ``create_app(get_settings())``, with its httptools protocol on
uvloop (``wire.Protocol``: each answer in one ``send``)."""

from __future__ import annotations

import errno
import logging
import sys
from pathlib import Path

import uvicorn
from starlette.applications import Starlette

from core.settings import get_settings
from producers.http.wire import Protocol

log = logging.getLogger("gonets.api")


def app_factory() -> Starlette:
    import multiprocessing

    from producers.http.app import create_app

    if multiprocessing.parent_process() is not None:
        # a worker of ``gonets api --workers N``: uvicorn spawned a fresh interpreter, which
        # has not run ``cli.main``'s setup, so without this its errors and traces never reach
        # Sentry and its logs are not JSON
        from core.observability import setup

        setup("api")
    return create_app(get_settings())


def serve(host: str, port: int, *, workers: int = 1) -> int:
    """Bind first, then say where it listens: a busy port is one line, not a traceback."""
    import socket

    get_settings()  # a configuration error stops here, with its message, before uvicorn starts
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        print(f"gonets api: cannot listen on {host}:{port}: {exc.strerror}"
              + (" (is another gonets api running? choose one with --port)"
                 if exc.errno == errno.EADDRINUSE else ""), file=sys.stderr)
        return 1
    sock.listen(2048)
    sock.set_inheritable(True)
    log.info("HTTP API on http://%s:%d (OpenAPI at /openapi.json)", host,
             sock.getsockname()[1])
    if workers == 1:
        config = uvicorn.Config("producers.http.serve:app_factory", factory=True,
                                log_level="warning", access_log=False,
                                timeout_graceful_shutdown=10, http=Protocol)
        uvicorn.Server(config).run(sockets=[sock])
    else:
        uvicorn.run("producers.http.serve:app_factory", factory=True, fd=sock.fileno(),
                    workers=workers, log_level="warning", access_log=False,
                    timeout_graceful_shutdown=10, http=Protocol)
    return 0


def pick_port(preferred: int = 8080, host: str = "127.0.0.1") -> int:
    """``preferred`` if it is free, else any free port."""
    import socket

    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise RuntimeError("no free port")


def demo_token(redis_url: str, namespace: str, keep: Path) -> str:
    """The ``make run`` demo token: the one saved in ``keep`` while Redis still knows it,
    else a new one (producer ``demo``, every scope), saved there (mode 0600)."""
    import os

    from core.store import redis_client
    from producers.http.auth import SCOPES, Tokens

    tokens = Tokens(redis_client(redis_url), namespace)
    # a receiver the tour runs on this host may get the demo producer's callbacks
    tokens.set_private_callbacks("demo", True)
    if keep.exists():
        saved = keep.read_text(encoding="utf-8").strip()
        if tokens.verify(saved) is not None:
            return saved
    token = tokens.create("demo", SCOPES).token
    keep.write_text(token + "\n", encoding="utf-8")
    os.chmod(keep, 0o600)
    return token

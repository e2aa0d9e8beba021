"""``gonets api``: uvicorn serving ``create_app(get_settings())``."""

from __future__ import annotations

import logging
from pathlib import Path

import uvicorn
from starlette.applications import Starlette

from core.settings import get_settings

log = logging.getLogger("gonets.api")


def app_factory() -> Starlette:
    from producers.http.app import create_app

    return create_app(get_settings())


def serve(host: str, port: int, *, workers: int = 1) -> int:
    get_settings()  # a configuration error stops here, with its message, before uvicorn starts
    log.info("HTTP API on http://%s:%d (OpenAPI at /openapi.json)", host, port)
    uvicorn.run("producers.http.serve:app_factory", factory=True, host=host, port=port,
                workers=workers, log_level="warning", access_log=False,
                timeout_graceful_shutdown=10)
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
    if keep.exists():
        saved = keep.read_text(encoding="utf-8").strip()
        if tokens.verify(saved) is not None:
            return saved
    token = tokens.create("demo", SCOPES).token
    keep.write_text(token + "\n", encoding="utf-8")
    os.chmod(keep, 0o600)
    return token

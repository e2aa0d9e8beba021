"""``gonets api``: uvicorn serving ``create_app(get_settings())``."""

from __future__ import annotations

import logging

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

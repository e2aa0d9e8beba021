"""``gonets api``: the HTTP API, a Starlette app served by uvicorn.

Every call carries a producer token (``Authorization: Bearer gnt_…``, see ``auth.py``) with
the scope the route needs; answers are JSON, errors ``application/problem+json`` naming the
field that is wrong.  Bodies are read with a size cap (413 past it, checked on
``Content-Length`` before anything is read).  Redis work runs in Starlette's thread pool,
but for sending one SMS, which is cheaper on the event loop (``framework.py`` says why).

This module only assembles: the framework (``framework.py``: ``Call``, ``Reply``, the route
wrapper that does auth, size, content type, ``Idempotency-Key`` and error translation once;
``problem.py`` and ``render.py``: the renderers) sits below the route modules (``sms.py``,
``consents.py``, ``payments.py``, ``smsc_webhook.py``, ``bepaid_webhook.py``), and nothing
imports this module but the server.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import redis
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from core.settings import Settings
from core.store import Store
from producers.http import (
    accounts,
    bepaid_webhook,
    bitrix24,
    consents,
    openapi,
    payments,
    sms,
    smsc_webhook,
)
from producers.http.framework import EXCEPTION_HANDLERS, Api
from producers.http.problem import problem
from producers.sms import Producer


def create_app(settings: Settings, *, store: Store | None = None,
               producer: Producer | None = None,
               extra_routes: list[BaseRoute] | None = None) -> Starlette:
    """The ASGI app. ``extra_routes`` are mounted as they are."""
    api = Api(settings, store=store, producer=producer)
    routes: list[BaseRoute] = [
        Route("/openapi.json", _openapi_endpoint, methods=["GET"]),
        Route("/healthz", _health(api), methods=["GET"]),
        *sms.routes(api),
        *smsc_webhook.routes(api),
        *consents.routes(api),
        *accounts.routes(api),
        *bitrix24.routes(api),
        *payments.routes(api),
        *bepaid_webhook.make_routes(api.settings, api.store),  # bePaid notifications
        *(extra_routes or []),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        api.close()

    app = Starlette(routes=routes, exception_handlers=dict(EXCEPTION_HANDLERS),
                    lifespan=lifespan)
    app.state.api = api
    app.state.openapi = openapi.document()
    return app


async def _openapi_endpoint(request: Request) -> Response:
    return JSONResponse(request.app.state.openapi)


def _health(api: Api) -> Callable[[Request], Awaitable[Response]]:
    async def health(request: Request) -> Response:
        try:
            await run_in_threadpool(api.store.ping)
        except redis.RedisError:
            return problem(503, "Redis does not answer")
        return JSONResponse({"ok": True})
    return health

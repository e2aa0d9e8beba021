"""``gonets api``: the HTTP API, a Starlette app served by uvicorn.

Every call carries a producer token (``Authorization: Bearer gnt_…``, see ``auth.py``) with
the scope the route needs; answers are JSON, errors ``application/problem+json`` naming the
field that is wrong.  Bodies are read with a size cap (413 past it, checked on
``Content-Length`` before anything is read).  Redis work runs in Starlette's thread pool;
the event loop only parses and routes.

Route modules (``sms.py``, ``smsc_webhook.py``…) build their routes with ``Api.route``,
which does auth, size, content type, ``Idempotency-Key`` and error translation once.
"""

from __future__ import annotations

import contextlib
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable

import redis
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, QueryParams
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from core.broker import build_broker
from core.errors import ConfigError, InvalidInput, UnknownMessage
from core.settings import Settings
from core.store import Store
from producers.http import idempotency
from producers.http.auth import Principal, Tokens
from producers.http.problem import ApiError, problem
from producers.sms import Producer

log = logging.getLogger("gonets.api")

#: body cap of every route but the batch one
MAX_BODY_BYTES = 64 * 1024
#: body cap of ``POST /v1/sms/batch`` (10,000 messages of ~1 KB JSON each, with room)
MAX_BATCH_BODY_BYTES = 16 * 1024 * 1024

#: threads that send the items of one batch side by side
BATCH_THREADS = 16

Handler = Callable[["Call"], "Reply"]


@dataclass
class Call:
    """What a handler gets: who calls, the raw body, path and query parameters."""

    principal: Principal | None
    body: bytes
    path_params: dict[str, Any]
    query: QueryParams
    headers: Headers

    def json(self) -> Any:
        if not self.body:
            raise ApiError(400, "a JSON body is required", field="body")
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise ApiError(400, "the body is not valid JSON", field="body") from None

    @property
    def producer(self) -> str:
        assert self.principal is not None
        return self.principal.producer


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    media_type: str = "application/json"

    def encode(self) -> str:
        return self.body if isinstance(self.body, str) else json.dumps(self.body,
                                                                      ensure_ascii=False)


class Api:
    """The app's shared parts: settings, store, producer, tokens, idempotency."""

    def __init__(self, settings: Settings, *, store: Store | None = None,
                 producer: Producer | None = None) -> None:
        self.settings = settings
        self.store = store or Store.from_settings(settings)
        self.broker = None
        if producer is None:
            self.broker = build_broker(settings)
            producer = Producer(settings, store=self.store, broker=self.broker)
        self.producer = producer
        self.tokens = Tokens(self.store.r, settings.namespace)
        self.idem = idempotency.Idempotency(self.store.r, settings.namespace)
        #: runs the items of a batch side by side (each is Redis round trips, not CPU)
        self.pool = ThreadPoolExecutor(BATCH_THREADS, thread_name_prefix="gonets-batch")

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        if self.broker is not None:
            self.broker.close()
        self.store.r.close()

    # --- the one wrapper every route goes through
    def route(self, path: str, handler: Handler, *, methods: list[str],
              scope: str | tuple[str, ...] | None, idempotent: bool = False,
              max_body: int = MAX_BODY_BYTES, json_body: bool = True,
              name: str | None = None) -> Route:
        async def endpoint(request: Request) -> Response:
            try:
                length = request.headers.get("content-length")
                if length is not None and (not length.isdigit() or int(length) > max_body):
                    raise ApiError(413, f"bodies of this call are limited to {max_body} bytes")
                body = b""
                if request.method in ("POST", "PUT", "PATCH", "DELETE"):
                    body = await _read_capped(request, max_body)
                    if json_body and body:
                        ctype = request.headers.get("content-type", "").split(";")[0].strip()
                        if ctype != "application/json" and not ctype.endswith("+json"):
                            raise ApiError(415, "send the body as application/json",
                                           field="Content-Type")
                reply = await run_in_threadpool(self._handle, request, body, handler, scope,
                                                idempotent)
            except ApiError as exc:
                return problem(exc.status, exc.detail, exc.field, exc.headers, **exc.extra)
            return Response(reply.encode(), status_code=reply.status, headers=reply.headers,
                            media_type=reply.media_type)

        return Route(path, endpoint, methods=methods, name=name)

    def _handle(self, request: Request, body: bytes, handler: Handler,
                scope: str | tuple[str, ...] | None,
                idempotent: bool) -> Reply:
        principal = self.authenticate(request.headers, scope) if scope else None
        call = Call(principal, body, dict(request.path_params), request.query_params,
                    request.headers)
        key = request.headers.get("idempotency-key") if idempotent else None
        if key is None or principal is None:
            return self._run(handler, call)
        idempotency.check_key(key)
        fp = idempotency.fingerprint(request.method, request.url.path, body)
        stored = self.idem.begin(principal.producer, key, fp)
        if stored is not None:
            return Reply(stored.status, stored.body, {"Idempotent-Replayed": "true"},
                         stored.media_type)
        try:
            reply = self._run(handler, call)
        except ApiError as exc:
            from producers.http.problem import problem_body

            self.idem.finish(principal.producer, key, fp, exc.status, json.dumps(
                problem_body(exc.status, exc.detail, exc.field, **exc.extra)),
                "application/problem+json")
            raise
        except BaseException:
            self.idem.abandon(principal.producer, key)
            raise
        self.idem.finish(principal.producer, key, fp, reply.status, reply.encode(),
                         reply.media_type)
        return reply

    def _run(self, handler: Handler, call: Call) -> Reply:
        try:
            return handler(call)
        except InvalidInput as exc:
            raise ApiError(422, exc.reason, field=exc.field) from None
        except UnknownMessage:
            raise ApiError(404, "no such message") from None
        except ConfigError as exc:
            raise ApiError(422, str(exc)) from None
        except redis.RedisError as exc:
            log.error("Redis unavailable: %s", type(exc).__name__)
            raise ApiError(503, "the store is unavailable; try again",
                           headers={"Retry-After": "5"}) from exc

    def authenticate(self, headers: Headers, scope: str | tuple[str, ...]) -> Principal:
        """The caller, if the token is valid and has ``scope`` (or one of them)."""
        auth = headers.get("authorization", "")
        kind, _, token = auth.partition(" ")
        challenge = {"WWW-Authenticate": 'Bearer realm="gonets"'}
        if kind.lower() != "bearer" or not token.strip():
            raise ApiError(401, "send Authorization: Bearer <token> (gonets token create)",
                           headers=challenge)
        try:
            principal = self.tokens.verify(token.strip())
        except redis.RedisError as exc:
            raise ApiError(503, "the store is unavailable; try again",
                           headers={"Retry-After": "5"}) from exc
        if principal is None:
            raise ApiError(401, "the token is unknown or revoked",
                           headers={**challenge, "WWW-Authenticate":
                                    'Bearer realm="gonets", error="invalid_token"'})
        wanted = (scope,) if isinstance(scope, str) else scope
        if not principal.scopes.intersection(wanted):
            raise ApiError(403, f"this call needs the '{' or '.join(wanted)}' scope; the token "
                                f"has {', '.join(sorted(principal.scopes))}", field="scope")
        return principal


async def _read_capped(request: Request, max_body: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_body:
            raise ApiError(413, f"bodies of this call are limited to {max_body} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = {404: "no such route", 405: f"{request.method} is not allowed here"}.get(
        exc.status_code, str(exc.detail))
    return problem(exc.status_code, detail, headers=exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path,
              exc_info=(type(exc), exc, exc.__traceback__))
    return problem(500, "internal error; it has been logged")


def create_app(settings: Settings, *, store: Store | None = None,
               producer: Producer | None = None,
               extra_routes: list[BaseRoute] | None = None) -> Starlette:
    """The ASGI app. ``extra_routes`` are mounted as they are (e.g. bePaid's webhook)."""
    from producers.http import openapi, sms, smsc_webhook

    api = Api(settings, store=store, producer=producer)
    routes: list[BaseRoute] = [
        Route("/openapi.json", _openapi_endpoint, methods=["GET"]),
        Route("/healthz", _health(api), methods=["GET"]),
        *sms.routes(api),
        *smsc_webhook.routes(api),
        *_optional_routes(api),
        *(extra_routes or []),
    ]
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        api.close()

    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error,
                                                       Exception: _server_error},
                    lifespan=lifespan)
    app.state.api = api
    app.state.openapi = openapi.document()
    return app


def _optional_routes(api: Api) -> list[BaseRoute]:
    """Consent routes, and payment routes when the payments producer is installed."""
    from producers.http import consents

    routes: list[BaseRoute] = [*consents.routes(api)]
    if PAYMENTS:
        from producers.http import bepaid_webhook, payments

        routes += payments.routes(api)
        routes += bepaid_webhook.make_routes(api.settings, api.store)  # bePaid notifications
    return routes


def _has_payments() -> bool:
    import importlib.util

    return importlib.util.find_spec("producers.payments") is not None


#: the MTS Money producer (producers/payments.py) is present
PAYMENTS = _has_payments()


async def _openapi_endpoint(request: Request) -> Response:
    return JSONResponse(request.app.state.openapi)


def _health(api: Api) -> Callable[[Request], Awaitable[Response]]:
    async def health(request: Request) -> Response:
        try:
            await run_in_threadpool(api.store.r.ping)
        except redis.RedisError:
            return problem(503, "Redis does not answer")
        return JSONResponse({"ok": True})
    return health

"""The HTTP framework under every route: what a handler gets and returns, and the one wrapper
every route goes through.

``route(path, handler, ...)`` reads the body with a size cap (413 past it, checked on
``Content-Length`` before anything is read), checks the content type, runs the handler in
Starlette's thread pool (or a route's ``on_loop`` handler on the event loop itself) and
translates errors once:
``ApiError`` and the ``core.errors`` a handler lets through become
``application/problem+json`` (``problem.py``).  ``Api.route`` adds the producer token (the
scope a route needs) and ``Idempotency-Key`` to it; a route with its own credentials (the bePaid
receiver's HTTP Basic) uses ``route`` directly and checks them in its handler.

A route with an ``on_loop`` handler (sending one SMS) runs it on the event loop itself: the
call is one Redis round trip of well under a millisecond, and handing it to a thread and back
cost more CPU than the call itself (a fifth of a request's time in the profile).  Being async,
it may wait for other requests' work to share a round trip with them (``sms.SendGroup``).  A
request of such a route carrying ``Idempotency-Key`` still goes to a thread with the route's
plain handler: a repeat of a key still running waits for the first answer, and the first may be
running on this same loop.  Redis calls have their timeouts either way (``core.redis_conn``);
``gonets api --workers N`` runs several processes, so one waiting on Redis does not hold the
others' requests.

Imports run one way: route modules (``sms.py``, ``payments.py``…) import this module,
``problem.py`` and ``render.py``; ``app.py`` imports the route modules and only assembles.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, QueryParams
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from core.broker import build_broker
from core.errors import ConfigError, InvalidInput, Unavailable, UnknownMessage
from core.settings import Settings
from core.store import Store
from producers.http import idempotency
from producers.http.auth import Principal, Tokens
from producers.http.problem import ApiError, problem, problem_body
from producers.sms import Producer

log = logging.getLogger("gonets.api")

#: body cap of every route but the batch one
MAX_BODY_BYTES = 64 * 1024
#: body cap of ``POST /v1/sms/batch`` (10,000 messages of ~1 KB JSON each, with room)
MAX_BATCH_BODY_BYTES = 16 * 1024 * 1024

Handler = Callable[["Call"], "Reply"]
#: a handler run on the event loop (``route``'s ``on_loop``)
LoopHandler = Callable[["Call"], Awaitable["Reply"]]
#: checks the caller's credentials in the request headers; raises ApiError (401/403/503)
Authenticate = Callable[[Headers], Principal]


@dataclass
class Call:
    """What a handler gets: who calls, the raw body, path and query parameters."""

    principal: Principal | None
    body: bytes
    path_params: dict[str, Any]
    query: QueryParams
    headers: Headers
    client: str = "-"

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
        """The body as JSON text: by orjson (a fifth of ``json.dumps``' time for a batch's
        10,000 results), or ``json.dumps`` for what orjson does not take (keys that are not
        strings, integers past 64 bits)."""
        if isinstance(self.body, str):
            return self.body
        try:
            return orjson.dumps(self.body).decode()
        except TypeError:
            return json.dumps(self.body, ensure_ascii=False)


def route(path: str, handler: Handler, *, methods: list[str],
          authenticate: Authenticate | None = None,
          idem: idempotency.Idempotency | None = None, idempotent: bool = False,
          max_body: int = MAX_BODY_BYTES, json_body: bool = True,
          name: str | None = None, on_loop: LoopHandler | None = None) -> Route:
    """A Starlette route running ``handler`` the one way every route runs.

    ``authenticate``: the caller's credentials (None: the handler checks its own, or none);
    ``idempotent``: honour ``Idempotency-Key`` through ``idem``; ``json_body``: a body must be
    sent as ``application/json`` (415 otherwise); ``on_loop``: the same handler as a coroutine,
    run on the event loop for a request without ``Idempotency-Key`` (see the module
    docstring)."""
    key_idem = idem if idempotent else None

    async def endpoint(request: Request) -> Response:
        try:
            length = request.headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > max_body):
                raise ApiError(413, f"bodies of this call are limited to {max_body} bytes")
            body = b""
            if request.method in ("POST", "PUT", "PATCH", "DELETE"):
                body = await read_capped(request, max_body)
                if json_body and body:
                    ctype = request.headers.get("content-type", "").split(";")[0].strip()
                    if ctype != "application/json" and not ctype.endswith("+json"):
                        raise ApiError(415, "send the body as application/json",
                                       field="Content-Type")
            if on_loop is not None and "idempotency-key" not in request.headers:
                principal = authenticate(request.headers) if authenticate is not None else None
                call = _call(request, body, principal)
                try:
                    reply = await on_loop(call)
                except _TRANSLATED as exc:
                    raise _translate(exc) from (exc if isinstance(exc, _KEEP_CAUSE) else None)
            else:
                reply = await run_in_threadpool(_handle, request, body, handler, authenticate,
                                                key_idem)
        except ApiError as exc:
            return problem(exc.status, exc.detail, exc.field, exc.headers, **exc.extra)
        return Response(reply.encode(), status_code=reply.status, headers=reply.headers,
                        media_type=reply.media_type)

    return Route(path, endpoint, methods=methods, name=name)


def _call(request: Request, body: bytes, principal: Principal | None) -> Call:
    return Call(principal, body, dict(request.path_params), request.query_params,
                request.headers, request.client.host if request.client else "-")


def _handle(request: Request, body: bytes, handler: Handler,
            authenticate: Authenticate | None,
            idem: idempotency.Idempotency | None) -> Reply:
    principal = authenticate(request.headers) if authenticate is not None else None
    call = _call(request, body, principal)
    key = request.headers.get("idempotency-key") if idem is not None else None
    if key is None or idem is None or principal is None:
        return _run(handler, call)
    idempotency.check_key(key)
    fp = idempotency.fingerprint(request.method, request.url.path, body)
    stored = idem.begin(principal.producer, key, fp)
    if stored is not None:
        return Reply(stored.status, stored.body,
                     {**(stored.headers or {}), "Idempotent-Replayed": "true"},
                     stored.media_type)
    try:
        reply = _run(handler, call)
    except ApiError as exc:
        idem.finish(principal.producer, key, fp, exc.status, json.dumps(
            problem_body(exc.status, exc.detail, exc.field, **exc.extra)),
            "application/problem+json")
        raise
    except BaseException:
        idem.abandon(principal.producer, key)
        raise
    idem.finish(principal.producer, key, fp, reply.status, reply.encode(), reply.media_type,
                reply.headers)
    return reply


def _run(handler: Handler, call: Call) -> Reply:
    try:
        return handler(call)
    except _TRANSLATED as exc:
        raise _translate(exc) from (exc if isinstance(exc, _KEEP_CAUSE) else None)


#: the errors a handler may let through, answered as problem+json by ``_translate``
_TRANSLATED = (InvalidInput, UnknownMessage, ConfigError, Unavailable, redis.RedisError)
_KEEP_CAUSE = (Unavailable, redis.RedisError)


def _translate(exc: BaseException) -> ApiError:
    """The answer to one of the ``_TRANSLATED`` errors a handler let through, translated once
    (raise it ``from`` the error for Redis outages, from None for the rest)."""
    if isinstance(exc, InvalidInput):  # worded for an HTTP client where the reason says how
        return ApiError(422, getattr(exc, "http_reason", exc.reason), field=exc.field)
    if isinstance(exc, UnknownMessage):
        return ApiError(404, "no such message")
    if isinstance(exc, ConfigError):
        return ApiError(422, str(exc))
    if isinstance(exc, Unavailable):  # the producer's own translation of a Redis outage
        log.error("%s", exc)
    else:
        log.error("Redis unavailable: %s", type(exc).__name__)
    return store_unavailable()


def store_unavailable() -> ApiError:
    return ApiError(503, "the store is unavailable; try again", headers={"Retry-After": "5"})


async def read_capped(request: Request, max_body: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_body:
            raise ApiError(413, f"bodies of this call are limited to {max_body} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (no such route, method not allowed) as problem+json."""
    assert isinstance(exc, HTTPException)
    detail = {404: "no such route", 405: f"{request.method} is not allowed here"}.get(
        exc.status_code, str(exc.detail))
    return problem(exc.status_code, detail,
                   headers=dict(exc.headers) if exc.headers is not None else None)


async def server_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path,
              exc_info=(type(exc), exc, exc.__traceback__))
    return problem(500, "internal error; it has been logged")


#: the exception handlers of every Gonets app
EXCEPTION_HANDLERS = {HTTPException: http_error, Exception: server_error}


class Api:
    """The app's shared parts: settings, store, producer, tokens, idempotency; and ``route``
    with producer tokens."""

    def __init__(self, settings: Settings, *, store: Store | None = None,
                 producer: Producer | None = None) -> None:
        self.settings = settings
        self.store = store or Store.from_settings(settings)
        self.broker = None
        if producer is None:
            self.broker = build_broker(settings)
            producer = Producer(settings, store=self.store, broker=self.broker)
        self.producer = producer
        # the token and Idempotency-Key stores keep their own keys on the store's client
        # (ns:token*, ns:producer:*); verified tokens remembered until revoked (auth.py)
        self.tokens = Tokens(self.store.r, settings.namespace, remember=True)
        self.idem = idempotency.Idempotency(self.store.r, settings.namespace)  # ns:http-idem:*

    def close(self) -> None:
        if self.tokens.verified is not None:
            self.tokens.verified.close()
        if self.broker is not None:
            self.broker.close()
        self.store.close()

    def route(self, path: str, handler: Handler, *, methods: list[str],
              scope: str | tuple[str, ...] | None, idempotent: bool = False,
              max_body: int = MAX_BODY_BYTES, json_body: bool = True,
              name: str | None = None, on_loop: LoopHandler | None = None) -> Route:
        """``route`` for a call with a producer token of ``scope`` (None: no token)."""
        authenticate: Authenticate | None = None
        if scope is not None:
            wanted = scope

            def authenticate(headers: Headers) -> Principal:
                return self.authenticate(headers, wanted)

        return route(path, handler, methods=methods, authenticate=authenticate,
                     idem=self.idem, idempotent=idempotent, max_body=max_body,
                     json_body=json_body, name=name, on_loop=on_loop)

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
            raise store_unavailable() from exc
        if principal is None:
            raise ApiError(401, "the token is unknown or revoked",
                           headers={**challenge, "WWW-Authenticate":
                                    'Bearer realm="gonets", error="invalid_token"'})
        wanted = (scope,) if isinstance(scope, str) else scope
        if not principal.scopes.intersection(wanted):
            raise ApiError(403, f"this call needs the '{' or '.join(wanted)}' scope; the token "
                                f"has {', '.join(sorted(principal.scopes))}", field="scope")
        return principal

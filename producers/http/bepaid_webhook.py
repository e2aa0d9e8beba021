"""bePaid notifications (webhooks) for MTS Money payments, as Starlette routes.

``POST /v1/webhooks/bepaid/{account}``: bePaid posts ``{"transaction": {...}}`` with HTTP Basic
credentials of the shop (shop id and secret key of that account, from its credential refs).

* wrong or missing credentials: 401, a log line (the user name masked), nothing changed;
* a body that is not a bePaid transaction: 400, never a crash;
* a transaction for another amount, currency or uid than the payment's: 422, nothing changed;
* otherwise the status is applied idempotently (the same notification twice changes nothing;
  a late ``pending`` never overwrites ``successful``) and the answer is 200 at once;
* a payment Gonets does not know (expired after retention, another system's): 200, ignored.

The HTTP API (``gonets api``) mounts ``make_routes(settings, store)``; ``make_app(settings)``
runs the receiver alone (``gonets pay webhooks``); the module-level ``routes`` use the
process-wide settings.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import threading
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from core.errors import ConfigError, UnknownMessage
from core.payments import PaymentStore, parse_transaction_envelope
from core.settings import Account, Settings, get_settings
from core.store import Store

log = logging.getLogger("gonets.webhooks.bepaid")

PATH = "/v1/webhooks/bepaid/{account}"
#: a notification is a few kilobytes; anything much larger is not one
MAX_BODY_BYTES = 64 * 1024
#: used when the account's options do not say
DEFAULT_LOOKUP_AFTER_S = 300.0


@dataclass
class WebhookContext:
    settings: Settings
    payments: PaymentStore


_default: WebhookContext | None = None
_lock = threading.Lock()


def context_for(settings: Settings, store: Store | None = None) -> WebhookContext:
    return WebhookContext(settings, PaymentStore(store or Store.from_settings(settings)))


def _context(request: Request) -> WebhookContext:
    ctx = request.scope.get("gonets_bepaid_webhook") or getattr(request.app.state,
                                                                "bepaid_webhook", None)
    if isinstance(ctx, WebhookContext):
        return ctx
    global _default
    with _lock:
        if _default is None:
            _default = context_for(get_settings())
        return _default


def _mask(user: str) -> str:
    return (user[:2] + "*" * max(len(user) - 2, 0))[:12] if user else "-"


def _credentials(header: str) -> tuple[str, str] | None:
    if not header.lower().startswith("basic "):
        return None
    try:
        raw = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    user, sep, password = raw.partition(":")
    return (user, password) if sep else None


def _authentic(account: Account, header: str) -> tuple[bool, str]:
    got = _credentials(header)
    if got is None:
        return False, "-"
    user, password = got
    try:
        shop_id, secret = account.secret("shop_id"), account.secret("secret_key")
    except ConfigError:
        log.error("bePaid webhook for %s: the account's shop credentials are not configured",
                  account.name)
        return False, _mask(user)
    ok_user = hmac.compare_digest(user.encode(), shop_id.encode())
    ok_pw = hmac.compare_digest(password.encode(), secret.encode())
    return ok_user and ok_pw, _mask(user)


def _lookup_after_s(account: Account) -> float:
    value = account.options.get("pending_lookup_after_s", DEFAULT_LOOKUP_AFTER_S)
    try:
        return float(value)
    except (TypeError, ValueError):
        return DEFAULT_LOOKUP_AFTER_S


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def receive(request: Request) -> JSONResponse:
    ctx = _context(request)
    name = request.path_params.get("account", "")
    try:
        account = ctx.settings.account(name)
    except ConfigError:
        account = None
    if account is None or account.provider != "bepaid":
        return _error(404, "no such bePaid account")
    ok, user = _authentic(account, request.headers.get("authorization", ""))
    if not ok:
        client = request.client.host if request.client else "-"
        log.warning("bePaid webhook for %s refused: bad or missing credentials (user %s, "
                    "from %s)", account.name, user, client)
        return JSONResponse({"error": "unauthorized"}, status_code=401,
                            headers={"WWW-Authenticate": 'Basic realm="gonets"'})
    size = request.headers.get("content-length")
    if size is not None and (not size.isdigit() or int(size) > MAX_BODY_BYTES):
        return _error(413 if size.isdigit() else 400, "body too large")
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return _error(413, "body too large")
    try:
        data: Any = json.loads(body.decode("utf-8"))
        tx = parse_transaction_envelope(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        return _error(400, f"not a bePaid notification: {str(exc)[:200]}")
    if not tx.tracking_id:
        return _error(400, "not a bePaid notification: no tracking_id")
    return await run_in_threadpool(_apply, ctx, account, tx)


def _apply(ctx: WebhookContext, account: Account, tx: Any) -> JSONResponse:
    ps = ctx.payments
    rec = ps.find_payment(tx.tracking_id)
    if rec is None or rec.get("account") != account.name:
        log.warning("bePaid webhook for %s: no payment %s here; ignored", account.name,
                    tx.tracking_id)
        return JSONResponse({"status": "ignored", "reason": "unknown payment"})
    try:
        changed = ps.apply(tx.tracking_id, tx, source="webhook",
                           lookup_after_s=_lookup_after_s(account))
    except UnknownMessage:
        return JSONResponse({"status": "ignored", "reason": "unknown payment"})
    except ValueError as exc:
        log.error("bePaid webhook for %s: payment %s: %s; nothing changed", account.name,
                  tx.tracking_id, exc)
        return _error(422, str(exc))
    status = ps.r.hget(ps.pay_key(tx.tracking_id), "status")
    return JSONResponse({"status": status, "changed": changed})


routes: list[Route] = [Route(PATH, receive, methods=["POST"], name="bepaid_webhook")]


def make_routes(settings: Settings, store: Store | None = None) -> list[Route]:
    """The receiver's routes bound to ``settings`` (and ``store``), for an app that serves
    other things too (the HTTP API)."""
    ctx = context_for(settings, store)

    async def bound(request: Request) -> JSONResponse:
        request.scope["gonets_bepaid_webhook"] = ctx
        return await receive(request)

    return [Route(PATH, bound, methods=["POST"], name="bepaid_webhook")]


def make_app(settings: Settings) -> Starlette:
    """A Starlette app with only the bePaid receiver (the full API mounts ``routes``)."""
    app = Starlette(routes=routes)
    app.state.bepaid_webhook = context_for(settings)
    return app

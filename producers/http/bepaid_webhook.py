"""bePaid notifications (webhooks) for MTS Money payments, as Starlette routes.

``POST /v1/webhooks/bepaid/{account}``: bePaid posts ``{"transaction": {...}}`` with HTTP Basic
credentials of the shop (shop id and secret key of that account, from its credential refs).

Errors are ``application/problem+json`` like every API answer (the receiver goes through
``framework.route``):

* an account that is not a bePaid account here: 404;
* wrong or missing credentials: 401, a log line (the user name masked), nothing changed;
* a body over 64 KB: 413; a body that is not a bePaid transaction: 400, never a crash;
* a transaction for another amount, currency or uid than the payment's: 422, nothing changed;
* otherwise the status is applied idempotently (the same notification twice changes nothing;
  a late ``pending`` never overwrites ``successful``) and the answer is 200 at once;
* a payment Gonets does not know (expired after retention, another system's): 200, ignored.

The HTTP API (``gonets api``) mounts ``make_routes(settings, store)``; ``make_app(settings)``
runs the receiver alone (``gonets pay webhooks``).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import logging
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Route

from core.errors import ConfigError, UnknownMessage
from core.payment_store import PaymentStore
from core.payments import parse_transaction_envelope
from core.provider_options import bepaid_options
from core.settings import Account, Settings
from core.store import Store
from producers.http.framework import EXCEPTION_HANDLERS, Call, Reply, route
from producers.http.problem import ApiError

log = logging.getLogger("gonets.webhooks.bepaid")

PATH = "/v1/webhooks/bepaid/{account}"
#: a notification is a few kilobytes; anything much larger is not one
MAX_BODY_BYTES = 64 * 1024


@dataclass
class WebhookContext:
    settings: Settings
    payments: PaymentStore


def context_for(settings: Settings, store: Store | None = None) -> WebhookContext:
    for account in settings.payment_accounts():
        bepaid_options(account)  # a bad options table stops the receiver at start, naming it
    return WebhookContext(settings, PaymentStore(store or Store.from_settings(settings)))


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


def receive(ctx: WebhookContext, call: Call) -> Reply:
    name = call.path_params.get("account", "")
    try:
        account = ctx.settings.payment_account(name)  # bePaid: the one payments provider
    except ConfigError:
        raise ApiError(404, "no such bePaid account", field="account") from None
    ok, user = _authentic(account, call.headers.get("authorization", ""))
    if not ok:
        log.warning("bePaid webhook for %s refused: bad or missing credentials (user %s, "
                    "from %s)", account.name, user, call.client)
        raise ApiError(401, "send the shop's id and secret key (HTTP Basic)",
                       headers={"WWW-Authenticate": 'Basic realm="gonets"'})
    data = call.json()
    try:
        tx = parse_transaction_envelope(data)
    except ValueError as exc:
        raise ApiError(400, f"not a bePaid notification: {str(exc)[:200]}",
                       field="body") from None
    if not tx.tracking_id:
        raise ApiError(400, "not a bePaid notification: no tracking_id",
                       field="transaction.tracking_id")
    return _apply(ctx, account, tx)


def _apply(ctx: WebhookContext, account: Account, tx: Any) -> Reply:
    ps = ctx.payments
    rec = ps.find_payment(tx.tracking_id)
    if rec is None or rec.get("account") != account.name:
        log.warning("bePaid webhook for %s: no payment %s here; ignored", account.name,
                    tx.tracking_id)
        return Reply(200, {"status": "ignored", "reason": "unknown payment"})
    try:
        changed = ps.apply(tx.tracking_id, tx, source="webhook",
                           lookup_after_s=bepaid_options(account).pending_lookup_after_s)
    except UnknownMessage:
        return Reply(200, {"status": "ignored", "reason": "unknown payment"})
    except ValueError as exc:
        log.error("bePaid webhook for %s: payment %s: %s; nothing changed", account.name,
                  tx.tracking_id, exc)
        raise ApiError(422, str(exc)) from None
    now = ps.find_payment(tx.tracking_id) or {}
    return Reply(200, {"status": now.get("status"), "changed": changed})


def make_routes(settings: Settings, store: Store | None = None) -> list[Route]:
    """The receiver's routes bound to ``settings`` (and ``store``), through the route wrapper
    every API route uses (body cap, errors as problem+json); the handler checks bePaid's
    HTTP Basic credentials itself.  bePaid's content type is not ours to demand: the body is
    parsed as JSON whatever it says."""
    ctx = context_for(settings, store)
    return [route(PATH, functools.partial(receive, ctx), methods=["POST"],
                  max_body=MAX_BODY_BYTES, json_body=False, name="bepaid_webhook")]


def make_app(settings: Settings) -> Starlette:
    """A Starlette app with only the bePaid receiver (the full API mounts ``make_routes``)."""
    return Starlette(routes=make_routes(settings), exception_handlers=dict(EXCEPTION_HANDLERS))

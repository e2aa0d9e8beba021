"""What may leave the process: phone numbers masked, texts, credentials and tokens dropped,
in every Sentry event, transaction, breadcrumb and log line.

``scrub(value)`` judges by key first (``SECRET_KEYS`` are dropped, ``PHONE_KEYS`` masked,
``KEEP_KEYS`` kept as they are: ids and times are long digit runs that are not phones), then by
content: anything that looks like a phone number is masked and ``key=value`` pairs of secrets in
free text (URLs: SMSC's ``login``/``psw``, SMS2's ``user``/``pass``) are dropped.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote

from core.privacy import mask_phone, scrub_text

if TYPE_CHECKING:  # sentry_sdk itself is imported only where Sentry is in use
    from sentry_sdk.types import Breadcrumb, BreadcrumbHint, Event, Hint

FILTERED = "[Filtered]"
#: keys whose values never leave the process (texts, secrets, tokens); compared lower-case
SECRET_KEYS = frozenset({
    "text", "texts", "message_text", "mes", "body", "sms", "psw", "password", "passwd", "pass",
    "secret", "client_secret", "token", "access_token", "refresh_token", "id_token",
    "authorization", "api_key", "apikey", "credentials", "cookie", "set-cookie", "login",
    "card", "pan", "cvv", "cvc",
})
#: keys holding phone numbers: masked, not dropped (operator prefix helps debugging)
PHONE_KEYS = frozenset({"phone", "phones", "to", "msisdn", "destination_addr", "number"})
#: keys never scrubbed for phone-like digits (ids, times: long digit runs that are not phones)
KEEP_KEYS = frozenset({
    "event_id", "trace_id", "span_id", "parent_span_id", "timestamp", "start_timestamp",
    "release", "check_in_id", "dramatiq_message_id", "message_id", "redis_message_id",
    "msg_id", "provider_id", "payment_id", "seq", "sdk", "fire_ms", "eta",
    "message_timestamp", "thread_id", "lineno",
    "thread.id", "sid", "did", "started", "sample_rand",
})
#: ``key=value`` pairs in free text (URLs, span data ``http.query``, error messages): SMSC puts
#: login, password, phones and the text (``mes``) in the query string, SMS2 user and pass
_SECRETISH = re.compile(r"(?i)\b(login|psw|password|passwd|pass|user|username|secret|"
                        r"client_secret|token|access_token|apikey|api_key|mes|text|msg)"
                        r"=([^&\s'\"]+)")

#: what the other modules share: the role, each account's provider, whether Sentry is on
_state: dict[str, Any] = {"providers": {}, "role": None, "sentry": False, "traces_rate": 0.0}


#: what any pattern needs: a run of digits long enough to be a phone, a ``+`` and a digit
#: (a grouped number), or a ``=``
_SUSPECT = re.compile(r"\d{5}|=|\+\d")


#: ``key=value`` pairs of phone keys (SMSC's ``phones=%2B375...``: an encoded ``+`` hides the
#: number from the free-text reading, which leaves digit runs inside ids alone)
_PHONEISH = re.compile(r"(?i)\b(phones?|to|msisdn|destination_addr|number)=([^&\s'\"]+)")


def _phone_value(m: re.Match[str]) -> str:
    def one(p: str) -> str:
        masked = scrub_text(p)
        bare = p.strip().lstrip("+")
        return mask_phone(bare) if masked == p and bare.isdigit() else masked

    return f"{m.group(1)}=" + ",".join(one(p) for p in unquote(m.group(2)).split(","))


def _scrub_str(s: str) -> str:
    if not _SUSPECT.search(s):  # most strings (names, ops, URLs without a query): as they are
        return s
    s = _PHONEISH.sub(_phone_value, s) if "=" in s else s
    return _SECRETISH.sub(lambda m: f"{m.group(1)}={FILTERED}", scrub_text(s))


def scrub(value: Any, key: str | None = None) -> Any:
    """A copy of ``value`` without phone numbers (masked), texts or secrets (dropped)."""
    k = key.lower() if isinstance(key, str) else None
    if k in SECRET_KEYS:
        return FILTERED if value not in (None, "", [], {}) else value
    if k in KEEP_KEYS:
        return value
    if isinstance(value, str):
        if k in PHONE_KEYS:
            return mask_phone(value) if value.lstrip("+").isdigit() else _scrub_str(value)
        return _scrub_str(value)
    if isinstance(value, dict):
        return {kk: scrub(vv, kk) for kk, vv in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(scrub(v, key if k in PHONE_KEYS else None) for v in value)
    return value


def _scrub_dramatiq_args(event: dict[str, Any]) -> None:
    """dramatiq's integration attaches the message (args, kwargs, options): payloads carry
    ids, but a positional argument has no key to judge it by, so strings in ``args`` keep
    only what cannot be a text: ids and names without spaces."""
    ctx = event.get("contexts", {}).get("dramatiq")
    if not isinstance(ctx, dict):
        return
    data = ctx.get("data")
    if isinstance(data, dict) and isinstance(data.get("args"), (list, tuple)):
        data["args"] = [_arg(a) for a in data["args"]]


def _arg(a: Any) -> Any:
    if isinstance(a, str):
        idlike = re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", a) is not None
        return a if idlike and scrub_text(a) == a else FILTERED
    if isinstance(a, (list, tuple)):
        return [_arg(x) for x in a]
    if isinstance(a, dict):
        return scrub(a)
    return a


def _tag_account(event: dict[str, Any], account: Any) -> dict[str, Any]:
    tags = event.setdefault("tags", {})
    if isinstance(tags, list):  # sentry-sdk may carry tags as pairs
        tags = event["tags"] = dict(tags)
    if account:
        tags["account"] = account
        provider = _state["providers"].get(account)
        if provider:
            tags["provider"] = provider
    return tags  # type: ignore[no-any-return]


# The hooks take and give sentry-sdk's types; inside they handle the scrubbed copy as a plain
# dict (sentry-sdk's Event TypedDict does not admit all it carries, e.g. tags as pairs), and
# that copy keeps the shape of what came in.

def before_send(event: Event, hint: Hint) -> Event | None:
    ev: dict[str, Any] = scrub(event)
    _scrub_dramatiq_args(ev)
    extra = ev.get("extra") or {}
    alert = extra.get("gonets_alert")
    tags = ev.get("tags") or {}
    account = extra.get("account") or (tags.get("account") if isinstance(tags, dict) else None)
    tags = _tag_account(ev, account)
    if alert:
        # one issue per account and alert kind, however the text varies
        tags["alert"] = alert
        ev["fingerprint"] = ["gonets-account-alert", str(account), str(alert)]
        ev["level"] = "error"
    return cast("Event", ev)


#: fields of a transaction and of its spans that sentry-sdk fills with ids, times, names of
#: its own or numbers: never a phone, text or secret, so not walked (a job's transaction is
#: sent for every job: the walk is most of the scrub's cost)
_TX_PLAIN = frozenset({"event_id", "type", "platform", "timestamp", "start_timestamp", "sdk",
                       "release", "environment", "dist", "level", "measurements",
                       "transaction_info", "_meta"})
_SPAN_PLAIN = frozenset({"trace_id", "span_id", "parent_span_id", "same_process_as_parent",
                         "op", "origin", "status", "start_timestamp", "timestamp"})


def before_send_transaction(event: Event, hint: Hint) -> Event | None:
    """Transactions get the same treatment as events: span descriptions and data (httpx
    URLs and queries, Redis commands), tags, request data and the dramatiq message, scrubbed
    (every field but those of ``_TX_PLAIN``/``_SPAN_PLAIN``).  Their breadcrumbs (the job's
    log lines) are dropped: errors carry those."""
    event.pop("breadcrumbs", None)
    ev: dict[str, Any] = {k: v if k in _TX_PLAIN else
                          [_scrub_span(s) for s in v] if k == "spans" and isinstance(v, list)
                          else scrub(v, k) for k, v in event.items()}
    _scrub_dramatiq_args(ev)
    return cast("Event", ev)


def _scrub_span(span: Any) -> Any:
    if not isinstance(span, dict):
        return scrub(span)
    return {k: v if k in _SPAN_PLAIN else scrub(v, k) for k, v in span.items()}


def before_breadcrumb(crumb: Breadcrumb, hint: BreadcrumbHint) -> Breadcrumb | None:
    scrubbed: Breadcrumb = scrub(crumb)
    return scrubbed

"""The Python producer API for SMS: ``send_sms``, ``poll_status``, ``status``."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from core import provider_checks, routing
from core.broker import enqueue, get_broker
from core.contracts import POLL_STATUS, Kind, Lane, send_actor, send_queue, status_queue
from core.errors import ConfigError, InvalidInput
from core.provider_options import OPTIONS
from core.redis_conn import raises_unavailable
from core.settings import Route, Settings, get_settings
from core.sms_text import analyse
from core.store import Store, now_ms
from producers import consent, duplicates
from producers import validation as v

#: first status check after a message is queued, if no receipt arrives before
FIRST_CHECK_S = 10 * 60


def new_message_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Queued:
    """What a send did: ``id`` is the message's; ``duplicate`` when nothing new was queued
    because the same producer sent it already (the same content within the duplicate window,
    or the same idempotency key) and ``id`` is that first message's."""

    id: str
    duplicate: bool = False


class Producer:
    """Validates, writes the record, enqueues, returns the id. Thread-safe."""

    def __init__(self, settings: Settings, store: Store | None = None, broker: Any = None) -> None:
        self.settings = settings
        self.store = store or Store.from_settings(settings)
        self.broker = broker or get_broker(settings)

    def send_sms(self, to: str, text: str, **kw: Any) -> str:
        """Queue one SMS and return its id (a duplicate's: the first message's).
        See ``queue_sms``."""
        return self.queue_sms(to, text, **kw).id

    @raises_unavailable
    def queue_sms(self, to: str, text: str, *, sender: str | None = None,
                  account: str | None = None, lane: str = "bulk",
                  kind: str = "transactional", validity: int | None = None,
                  idempotency_key: str | None = None, idempotency_ttl_s: int = 24 * 3600,
                  options: dict[str, Any] | None = None, producer: str | None = None,
                  callback_url: str | None = None, integration: str | None = None) -> Queued:
        """Queue one SMS. Raises InvalidInput naming the field, Unavailable naming Redis and
        its address when Redis does not answer; on any error nothing is enqueued.  Duplicates
        and idempotency keys count per producer (``producers/duplicates.py``): another
        producer's identical send is a new message.

        ``producer`` names who sent it (the HTTP API's token holder; it sees only its own
        messages); ``callback_url`` receives every status change (producers/http/callbacks.py);
        ``integration`` (``bitrix24:<message id>``) has them reported to a Bitrix24 portal
        instead (producers/http/bitrix24.py)."""
        phone = v.normalise_phone(to, self.settings.default_region)
        text = v.check_text(text)
        sender = v.check_sender(sender)
        try:
            lane_v = Lane(lane)
        except ValueError:
            raise InvalidInput("lane", "must be 'urgent' or 'bulk'") from None
        try:
            kind_v = Kind(kind)
        except ValueError:
            raise InvalidInput("kind", "must be 'transactional' or 'promotional'") from None
        if kind_v is Kind.PROMOTIONAL:
            consent.require_consent(self.store, phone)
        validity = v.check_validity(validity)
        idempotency_key = v.check_idempotency_key(idempotency_key)
        callback_url = v.check_callback_url(callback_url)
        try:
            route = (Route(accounts=[self.settings.account(account).name]) if account
                     else self.settings.route_for(phone, kind=kind_v.value, lane=lane_v.value))
            acct = self.settings.account(
                routing.choose(self.store.r, self.store.keys, self.settings, route))
        except ConfigError as exc:
            raise InvalidInput("account", str(exc)) from None
        scope = route.scope  # duplicates and idempotency keys count across the route
        if acct.kind != "sms":
            raise InvalidInput("account", f"{acct.name} is a payments account, not an SMS account")
        info = analyse(text)
        if info.parts > acct.limits.max_parts:
            raise InvalidInput("text", f"needs {info.parts} SMS parts; this account allows at most "
                                       f"{acct.limits.max_parts}")
        opts = self._options(acct.provider, options)
        # a route's accounts may send under different default names: its duplicate window
        # compares what the caller asked for
        dup_sender = sender if len(route.accounts) > 1 else sender or acct.default_sender
        sender = sender or acct.default_sender
        provider_checks.check(acct.provider, phone, text, sender)

        msg_id = new_message_id()
        idem = None if idempotency_key is None else \
            duplicates.idempotency_key(producer, idempotency_key)
        if idem is not None:
            bound = self.store.claim_idempotency(scope, idem, msg_id, idempotency_ttl_s)
            if bound != msg_id:
                return Queued(bound, duplicate=True)
        first = duplicates.claim(self.store, acct, producer, phone, dup_sender, text, msg_id,
                                 scope=scope)
        if first != msg_id:  # the same content within the window: that message, not a new one
            if idem is not None:
                self.store.release_idempotency(scope, idem, msg_id)
                self.store.claim_idempotency(scope, idem, first, idempotency_ttl_s)
            return Queued(first, duplicate=True)
        created = now_ms()
        fields: dict[str, Any] = {
            "account": acct.name, "provider": acct.provider, "lane": lane_v.value,
            "kind": kind_v.value, "phone": phone, "text": text, "sender": sender,
            "encoding": info.encoding, "parts": info.parts, "validity_min": validity,
            "options": opts or None, "idempotency_key": idempotency_key,
            "producer": producer, "callback_url": callback_url, "integration": integration,
            # a route of several accounts: the worker may move the message along it
            "route": route.key if len(route.accounts) > 1 else None,
        }
        if validity is not None:
            fields["expires_ms"] = created + validity * 60_000
        self.store.create(msg_id, fields, next_check_ms=created + FIRST_CHECK_S * 1000)
        try:
            enqueue(self.broker, send_queue(acct.name, lane_v), send_actor(lane_v), msg_id)
        except Exception:
            # nothing half-done: no record without a job
            self.store.delete(msg_id)
            duplicates.release(self.store, scope, producer, phone, dup_sender, text, msg_id)
            if idem is not None:
                self.store.release_idempotency(scope, idem, msg_id)
            raise
        return Queued(msg_id)

    def _options(self, provider: str, options: dict[str, Any] | None) -> dict[str, Any]:
        if not options:
            return {}
        if not isinstance(options, dict):
            raise InvalidInput("options", "must be a mapping")
        model = OPTIONS.get(provider)
        if model is None:
            raise InvalidInput("options", f"provider {provider} takes no per-message options")
        try:
            return model.model_validate(options).model_dump(exclude_defaults=True)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(x) for x in err["loc"])
            msg = "unknown option" if err["type"] == "extra_forbidden" else err["msg"]
            raise InvalidInput(f"options.{where}", msg) from None

    @raises_unavailable
    def poll_status(self, msg_id: str) -> None:
        """Ask the provider for the status of ``msg_id`` now (enqueues a status-poll job)."""
        rec = self.store.get(msg_id)
        enqueue(self.broker, status_queue(rec["account"]), POLL_STATUS, msg_id)

    @raises_unavailable
    def status(self, msg_id: str) -> dict[str, Any]:
        """The record (without the text) and its status history."""
        rec: dict[str, Any] = dict(self.store.get(msg_id))
        rec.pop("text", None)
        rec["history"] = self.store.history(msg_id)
        return rec


_default: Producer | None = None
_default_lock = threading.Lock()


def get_producer() -> Producer:
    global _default
    with _default_lock:
        if _default is None:
            _default = Producer(get_settings())
        return _default


def send_sms(to: str, text: str, **kw: Any) -> str:
    """Queue one SMS with the process-wide settings. See Producer.send_sms."""
    return get_producer().send_sms(to, text, **kw)


def poll_status(msg_id: str) -> None:
    get_producer().poll_status(msg_id)


def status(msg_id: str) -> dict[str, Any]:
    return get_producer().status(msg_id)

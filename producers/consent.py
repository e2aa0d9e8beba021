"""Opt-in consent for promotional SMS (mts-belarus-sms-pro-and-bitrix.md: "Promotional SMS
requires subscriber consent (opt-in)").

``Producer.send_sms(kind="promotional")`` refuses a number without recorded consent
(``InvalidInput`` on field ``to``; nothing is enqueued).  Transactional messages need none.

Python API (``target`` is a ``Producer`` or a ``core.store.Store``; ``phone`` any form the
producer accepts, normalised to E.164 digits with the settings' default region)::

    record_consent(target, phone, *, source)   -> Consent   # opt-in
    withdraw_consent(target, phone, *, source) -> Consent   # opt-out
    has_consent(target, phone)                 -> bool
    get_consent(target, phone)                 -> Consent | None   # with its history

``source`` says where the consent (or its withdrawal) came from: "web form", "STOP reply",
"call centre, ticket 123"...  It is required and kept with the history, never expired.

CLI: ``gonets consent grant|withdraw --to PHONE --source TEXT`` and
``gonets consent show --to PHONE [--json]``.

Key layout (``ns`` is ``Settings.namespace``):

    ns:consent:<digits>            hash  granted "1"/"0", source, updated_ms, granted_ms,
                                         withdrawn_ms
    ns:consent:<digits>:history    list  JSON {"action": "grant"|"withdraw", "source", "at_ms"}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core.errors import InvalidInput
from core.replies import HashFields, text_dict
from core.store import Store, now_ms
from producers.validation import normalise_phone

__all__ = ["Consent", "get_consent", "has_consent", "record_consent", "withdraw_consent"]


@dataclass(frozen=True)
class Consent:
    phone: str
    granted: bool
    source: str
    updated_ms: int
    history: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"phone": self.phone, "granted": self.granted, "source": self.source,
                "updated_ms": self.updated_ms, "history": self.history}


def _store_and_region(target: Any, region: str | None) -> tuple[Store, str]:
    store = target if isinstance(target, Store) else getattr(target, "store", None)
    if not isinstance(store, Store):
        raise TypeError("target must be a Producer or a core.store.Store")
    settings = getattr(target, "settings", None)
    return store, region or getattr(settings, "default_region", None) or "BY"


def _phone(phone: object, region: str) -> str:
    try:
        return normalise_phone(phone, region)
    except InvalidInput as exc:
        raise InvalidInput("phone", exc.reason) from None


def _source(source: object) -> str:
    if not isinstance(source, str) or not source.strip() or len(source) > 200 \
            or not source.isprintable():
        raise InvalidInput("source", "say where the consent came from (1–200 printable "
                                     "characters)")
    return source.strip()


def _key(store: Store, digits: str) -> str:
    return store.keys.consent(digits)


def _set(target: Any, phone: object, source: object, granted: bool,
         region: str | None) -> Consent:
    store, region = _store_and_region(target, region)
    digits = _phone(phone, region)
    src = _source(source)
    at = now_ms()
    key = _key(store, digits)
    fields: HashFields = {"granted": "1" if granted else "0", "source": src, "updated_ms": str(at),
              ("granted_ms" if granted else "withdrawn_ms"): str(at)}
    event = json.dumps({"action": "grant" if granted else "withdraw", "source": src,
                        "at_ms": at}, ensure_ascii=False)
    pipe = store.r.pipeline(transaction=True)  # the consent records: this module's own keys
    pipe.hset(key, mapping=fields)
    pipe.rpush(store.keys.consent_history(digits), event)
    pipe.execute()
    return Consent(digits, granted, src, at)


def record_consent(target: Any, phone: object, *, source: str,
                   region: str | None = None) -> Consent:
    """Record that ``phone`` opted in to promotional SMS."""
    return _set(target, phone, source, True, region)


def withdraw_consent(target: Any, phone: object, *, source: str,
                     region: str | None = None) -> Consent:
    """Record that ``phone`` opted out; promotional SMS to it are refused from now on."""
    return _set(target, phone, source, False, region)


def consent_granted(store: Store, e164_digits: str) -> bool:
    """For a number already normalised by the producer."""
    # the consent records: this module's own keys
    return store.r.hget(_key(store, e164_digits), "granted") == "1"


class ConsentMissing(InvalidInput):
    """A promotional SMS to a number without a granted consent (field ``to``). ``reason``
    says how to record one from Python and the CLI; ``http_reason`` from the HTTP API."""

    def __init__(self, withdrawn_ms: int | None) -> None:
        if withdrawn_ms:
            day = datetime.fromtimestamp(withdrawn_ms / 1000, UTC).date().isoformat()
            why = (f"consent withdrawn on {day}: promotional SMS to this number are refused "
                   "until it opts in again")
        else:
            why = "no recorded opt-in consent for promotional SMS to this number"
        super().__init__("to", f"{why} (record it with producers.consent.record_consent or "
                               "gonets consent grant)")
        self.withdrawn_ms = withdrawn_ms
        self.http_reason = f"{why} (record it with PUT /v1/consents/{{phone}}, scope consent)"


def require_consent(store: Store, e164_digits: str) -> None:
    """Raise ConsentMissing unless the number has opted in (and not withdrawn since)."""
    # the consent records: this module's own keys
    granted, withdrawn = store.r.hmget(_key(store, e164_digits), ["granted", "withdrawn_ms"])
    if granted != "1":
        raise ConsentMissing(int(withdrawn) if granted == "0" and withdrawn else None)


def has_consent(target: Any, phone: object, *, region: str | None = None) -> bool:
    store, region = _store_and_region(target, region)
    return consent_granted(store, _phone(phone, region))


def get_consent(target: Any, phone: object, *, region: str | None = None) -> Consent | None:
    store, region = _store_and_region(target, region)
    digits = _phone(phone, region)
    key = _key(store, digits)
    rec = text_dict(store.r.hgetall(key))  # the consent records: this module's own keys
    if not rec:
        return None
    # the consent records: this module's own keys
    history = [json.loads(x) for x in store.r.lrange(store.keys.consent_history(digits), 0, -1)]
    return Consent(digits, rec.get("granted") == "1", rec.get("source", ""),
                   int(rec.get("updated_ms", "0")), history)

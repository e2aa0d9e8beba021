"""The Python producer API for MTS Money payments through bePaid.

    check_id = check_mts_money("+375 29 522-22-22")
    check_result(check_id, wait_s=10)   # {"status": "done", "result": "active", ...}
    pay_id = pay_mts_money("+375295222222", 1050, description="Order 42",
                           customer_answer="accept", check_id=check_id)
    payment(pay_id)                     # record and its status history

Each call validates, writes the record, enqueues one job and returns an id at once.  Amounts
are integers in minor units (1050 = 10.50 BYN); a float is refused, never rounded.  The
payment id is bePaid's ``tracking_id``.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

from core.broker import enqueue, get_broker
from core.errors import ConfigError, InvalidInput
from core.payment_store import PaymentStore
from core.payments import (
    CHECK_MTS_MONEY,
    CURRENCIES,
    LOOKUP_PAYMENT,
    MAX_AMOUNT_MINOR,
    PAY_MTS_MONEY,
    SWEEP_PENDING_PAYMENTS,
    CheckStatus,
    CustomerAnswer,
    payments_check_queue,
    payments_pay_queue,
    payments_sweep_queue,
)
from core.provider_options import BepaidOptions, bepaid_options
from core.settings import Account, Settings, get_settings
from core.store import Store, now_ms
from producers import duplicates
from producers import validation as v

_SEPARATORS = re.compile(r"[\s()\-.]")
#: a check result older than this is not reused for a payment (the pay job checks again)
CHECK_FRESH_S = 15 * 60
#: when a queued payment is first looked at by the sweep if nothing else moved it
FIRST_LOOKUP_S = 10 * 60


def normalise_mts_phone(raw: object) -> str:
    """``375XXXXXXXXX`` (Belarus, 12 digits, no '+'), the form bePaid wants."""
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidInput("phone", "a phone number is required")
    digits = _SEPARATORS.sub("", raw.strip()).removeprefix("+")
    if not digits.isdigit():
        raise InvalidInput("phone", "must contain only digits (and + ( ) - . spaces)")
    if not digits.startswith("375") or len(digits) != 12:
        raise InvalidInput("phone", "MTS Money takes Belarusian numbers: 375 and 9 digits")
    return digits


def check_amount(amount: object) -> int:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise InvalidInput("amount", "must be an integer number of minor units "
                                     "(e.g. 1050 for 10.50 BYN); floats are refused")
    if not 0 < amount <= MAX_AMOUNT_MINOR:
        raise InvalidInput("amount", f"must be between 1 and {MAX_AMOUNT_MINOR} minor units")
    return amount


def check_currency(currency: object, allowed: frozenset[str] | set[str]) -> str:
    if not isinstance(currency, str) or not re.fullmatch(r"[A-Z]{3}", currency):
        raise InvalidInput("currency", "must be an ISO 4217 code such as BYN")
    if currency not in allowed:
        raise InvalidInput("currency", f"{currency} is not taken here; use one of "
                                       f"{', '.join(sorted(allowed))}")
    return currency


def check_url(url: object, field: str) -> str:
    if not isinstance(url, str) or len(url) > 2000:
        raise InvalidInput(field, "must be an http(s) URL")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInput(field, "must be an http(s) URL")
    return url


def check_expired_at(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            raise InvalidInput("expired_at", "must be an ISO 8601 time with a UTC offset") \
                from None
    if not isinstance(value, dt.datetime) or value.tzinfo is None:
        raise InvalidInput("expired_at", "must be a time with a UTC offset")
    if value <= dt.datetime.now(dt.UTC):
        raise InvalidInput("expired_at", "is in the past")
    return value.isoformat(timespec="seconds")


def _description(text: object) -> str:
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("description", "is required")
    if len(text) > 255 or "\x00" in text:
        raise InvalidInput("description", "must be at most 255 characters, no NUL")
    return text


class Payments:
    """Validates, writes the record, enqueues, returns the id. Thread-safe."""

    def __init__(self, settings: Settings, store: Store | None = None, broker: Any = None) -> None:
        self.settings = settings
        self.store = store or Store.from_settings(settings)
        self.ps = PaymentStore(self.store)
        self.broker = broker or get_broker(settings)

    def account(self, name: str | None) -> Account:
        if name:
            try:
                acct = self.settings.account(name)
            except ConfigError as exc:
                raise InvalidInput("account", str(exc)) from None
            if acct.kind != "payments":
                raise InvalidInput("account", f"{name} is not a bePaid account")
            return acct
        found = self.settings.payment_accounts()
        if len(found) != 1:
            raise InvalidInput("account", "name the bePaid account (configured: "
                                          f"{[a.name for a in found]})")
        return found[0]

    def _options(self, acct: Account) -> BepaidOptions:
        # the same model the worker and the webhook receiver read them with
        return bepaid_options(acct)

    # --- check
    def check_mts_money(self, phone: str, *, account: str | None = None) -> str:
        """Queue a service-activation check; returns its id (see ``check_result``)."""
        number = normalise_mts_phone(phone)
        acct = self.account(account)
        check_id = uuid.uuid4().hex
        self.ps.create_check(check_id, {"account": acct.name, "phone": number})
        try:
            enqueue(self.broker, payments_check_queue(acct.name), CHECK_MTS_MONEY, check_id)
        except Exception:
            self.ps.delete_check(check_id)
            raise
        return check_id

    def check_result(self, check_id: str, *, wait_s: float = 0.0) -> dict[str, Any]:
        """The check record: ``status`` (queued, done, error) and, when done, ``result``
        (active, must_accept_terms, not_mts, invalid_phone, refused). Waits up to ``wait_s``
        for it to finish."""
        deadline = time.monotonic() + wait_s
        while True:
            rec = self.ps.check(check_id)
            if CheckStatus(rec["status"]).final or time.monotonic() >= deadline:
                out: dict[str, Any] = dict(rec)
                out["history"] = self.ps.history(check_id, check=True)
                return out
            time.sleep(0.05)

    # --- payment
    def pay_mts_money(self, phone: str, amount: int, *, description: str,
                      currency: str = "BYN", customer_answer: str | None = None,
                      check_id: str | None = None, account: str | None = None,
                      return_url: str | None = None, expired_at: Any = None,
                      test: bool | None = None, idempotency_key: str | None = None,
                      idempotency_ttl_s: int = 24 * 3600, producer: str | None = None,
                      callback_url: str | None = None,
                      allow_private_callback: bool = False) -> str:
        """Queue an MTS Money payment; returns its id (bePaid's ``tracking_id``).

        ``customer_answer`` is the customer's answer to the MTS Money terms (``accept`` or
        ``decline``); it matters only when the check says the terms must be accepted, and a
        ``decline`` never reaches bePaid.  ``check_id`` reuses a finished check of the same
        number; without it the worker checks first.  ``producer`` names who asked (the HTTP
        API's token holder); ``callback_url`` receives every status change
        (producers/http/callbacks.py).
        """
        number = normalise_mts_phone(phone)
        amount = check_amount(amount)
        acct = self.account(account)
        opts = self._options(acct)
        allowed = set(opts.currencies or CURRENCIES)
        currency = check_currency(currency, allowed)
        description = _description(description)
        answer: CustomerAnswer | None = None
        if customer_answer is not None:
            try:
                answer = CustomerAnswer(customer_answer)
            except ValueError:
                raise InvalidInput("customer_answer", "must be 'accept' or 'decline'") from None
        ret = return_url or opts.return_url
        if ret is None:
            raise InvalidInput("return_url", "is required (or set options.return_url on the "
                                             "account)")
        ret = check_url(ret, "return_url")
        notify = opts.notification_url or None
        expires = check_expired_at(expired_at)
        if test is not None and not isinstance(test, bool):
            raise InvalidInput("test", "must be true or false")
        is_test = opts.test if test is None else test
        idempotency_key = v.check_idempotency_key(idempotency_key)
        callback_url = v.check_callback_url(callback_url, allow_private=allow_private_callback)
        check_fields = self._reuse_check(check_id, number, acct.name)

        pay_id = uuid.uuid4().hex
        # the caller's key counts per producer, as a send's does: the same key from two
        # producers binds two payments, and no producer is answered with another's id
        idem = (None if idempotency_key is None
                else "pay:" + duplicates.idempotency_key(producer, idempotency_key))
        if idem is not None:
            bound = self.store.claim_idempotency(acct.name, idem, pay_id, idempotency_ttl_s)
            if bound != pay_id:
                return bound
        fields: dict[str, Any] = {
            "provider": acct.provider, "phone": number, "amount": amount, "currency": currency,
            "description": description, "customer_answer": answer.value if answer else None,
            "return_url": ret, "notification_url": notify, "expired_at": expires,
            "test": is_test, "idempotency_key": idempotency_key, "producer": producer,
            "callback_url": callback_url,
            "callback_private": 1 if callback_url and allow_private_callback else None,
            **check_fields,
        }
        self.ps.create_payment(pay_id, fields, account=acct.name,
                               due_ms=now_ms() + FIRST_LOOKUP_S * 1000)
        try:
            enqueue(self.broker, payments_pay_queue(acct.name), PAY_MTS_MONEY, pay_id)
        except Exception:
            self.ps.delete_payment(pay_id, acct.name)
            if idem is not None:
                self.store.release_idempotency(acct.name, idem, pay_id)
            raise
        return pay_id

    def _reuse_check(self, check_id: str | None, number: str, account: str) -> dict[str, Any]:
        if check_id is None:
            return {}
        rec = self.ps.find_check(check_id) if isinstance(check_id, str) else None
        if rec is None:
            raise InvalidInput("check_id", "no such check (or it has expired)")
        if rec.get("phone") != number or rec.get("account") != account:
            raise InvalidInput("check_id", "that check was for another number or account")
        fresh = now_ms() - int(rec.get("checked_ms") or 0) < CHECK_FRESH_S * 1000
        if rec["status"] != CheckStatus.DONE.value or not fresh:
            return {"check_id": check_id}  # not usable: the worker checks again
        return {"check_id": check_id, "check_result": rec["result"],
                "check_code": rec.get("code"),
                "check_message": rec.get("friendly_message") or rec.get("message")}

    def payment(self, pay_id: str) -> dict[str, Any]:
        """The payment record and its status history."""
        rec: dict[str, Any] = dict(self.ps.payment(pay_id))
        rec["history"] = self.ps.history(pay_id)
        return rec

    def refresh_payment(self, pay_id: str) -> None:
        """Look the payment up at bePaid now (enqueues a lookup)."""
        rec = self.ps.payment(pay_id)
        enqueue(self.broker, payments_sweep_queue(rec["account"]), LOOKUP_PAYMENT, pay_id)

    def sweep_pending_payments(self, account: str | None = None) -> list[str]:
        """Enqueue the pending sweep for one bePaid account, or for each; returns the
        accounts swept. The scheduler calls this on a timer."""
        names = [self.account(account).name] if account else [
            a.name for a in self.settings.payment_accounts()]
        for name in names:
            enqueue(self.broker, payments_sweep_queue(name), SWEEP_PENDING_PAYMENTS, name)
        return names


_default: Payments | None = None
_default_lock = threading.Lock()


def get_payments() -> Payments:
    global _default
    with _default_lock:
        if _default is None:
            _default = Payments(get_settings())
        return _default


def check_mts_money(phone: str, **kw: Any) -> str:
    return get_payments().check_mts_money(phone, **kw)


def check_result(check_id: str, **kw: Any) -> dict[str, Any]:
    return get_payments().check_result(check_id, **kw)


def pay_mts_money(phone: str, amount: int, **kw: Any) -> str:
    return get_payments().pay_mts_money(phone, amount, **kw)


def payment(pay_id: str) -> dict[str, Any]:
    return get_payments().payment(pay_id)


def sweep_pending_payments(account: str | None = None) -> list[str]:
    return get_payments().sweep_pending_payments(account)

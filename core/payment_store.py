"""MTS Money records: payments and service-activation checks, on the one record store.

Two kinds of record (``core.store.RecordModel``), each a Redis hash with its own status history,
moved by the same Lua scripts as messages, so a final status never changes and a status never
moves back (a late ``pending`` cannot undo ``successful``):

    ns:pay:<id>               hash    a payment; ``tracking_id`` at bePaid is its id
    ns:pay:<id>:history       list    its JSON status events, oldest first
    ns:pay:<id>:lock          string  the worker talking to bePaid about it (token, TTL)
    ns:pay:due:<account>      zset    id -> when the pending sweep should next look it up (ms)
    ns:mtscheck:<id>          hash    a service-activation check and its typed result
    ns:mtscheck:<id>:history  list
    ns:mtscheck:open          zset    checks without a result yet
    ns:payments:events        stream  every status change of payments and checks
    ns:owner:<kind>:<id>      string  the producer that made a payment or check (HTTP API)

The statuses and bePaid's transaction shape are the contract in ``core.payments``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from core.errors import UnknownMessage
from core.keys import Keys
from core.locks import new_token
from core.payments import (
    CHECK_RANK,
    PAYMENT_RANK,
    CheckStatus,
    PaymentStatus,
    Transaction,
)
from core.store import RecordModel, Store, Transition, now_ms

log = logging.getLogger("gonets.payments")

_EVENT_FIELDS = ("provider_status", "error_code", "uid", "source")

PAYMENTS: RecordModel[PaymentStatus] = RecordModel(
    name="payment", statuses=PaymentStatus, ranks=PAYMENT_RANK, record=Keys.pay,
    history=Keys.pay_history, events=Keys.payment_events, account_index=Keys.pay_due,
    kind="payment", event_fields=_EVENT_FIELDS)
CHECKS: RecordModel[CheckStatus] = RecordModel(
    name="check", statuses=CheckStatus, ranks=CHECK_RANK, record=Keys.mtscheck,
    history=Keys.mtscheck_history, events=Keys.payment_events, index=Keys.mtscheck_open,
    kind="check", event_fields=_EVENT_FIELDS)


class PaymentStore:
    """Payment and check records beside the messages of ``store`` (same Redis, same scripts)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.r = store.r
        self.payments = store.records(PAYMENTS)
        self.checks = store.records(CHECKS)

    # keys
    def pay_key(self, pay_id: str) -> str:
        return self.payments.record_key(pay_id)

    def check_key(self, check_id: str) -> str:
        return self.checks.record_key(check_id)

    def due_key(self, account: str) -> str:
        return self.payments.index_key(account)

    @property
    def events_key(self) -> str:
        return self.payments.events_key

    def history(self, rec_id: str, *, check: bool = False) -> list[dict[str, Any]]:
        return (self.checks if check else self.payments).history(rec_id)

    # payments
    def create_payment(self, pay_id: str, fields: Mapping[str, Any], *, account: str,
                       due_ms: int) -> bool:
        return self.payments.create(pay_id, {**fields, "account": account},
                                    next_check_ms=due_ms, reason=None)

    def payment(self, pay_id: str) -> dict[str, str]:
        return self.payments.get(pay_id)

    def find_payment(self, pay_id: str) -> dict[str, str] | None:
        return self.payments.find(pay_id)

    def delete_payment(self, pay_id: str, account: str) -> None:
        self.payments.delete(pay_id, account)

    def update_payment(self, pay_id: str, **fields: Any) -> None:
        """Set fields without changing the status (only on an existing record)."""
        self.payments.update(pay_id, **fields)

    def move_payment(self, pay_id: str, status: PaymentStatus | str, *, reason: str = "",
                     account: str | None = None, **fields: Any) -> Transition[PaymentStatus]:
        return self.payments.transition(pay_id, status, reason=reason, account=account,
                                        **fields)

    def incr_payment(self, pay_id: str, field: str, by: int = 1) -> int:
        """Count on a payment record (``attempts``, ``lookups``); returns the new count."""
        return self.payments.incr(pay_id, field, by)

    def schedule_lookup(self, pay_id: str, account: str, at_ms: int) -> None:
        """When the sweep should next look this (non-final) payment up at bePaid."""
        self.payments.schedule(pay_id, at_ms, account)

    def due(self, account: str, *, now: int | None = None, limit: int = 100) -> list[str]:
        return self.payments.due(account, now=now, limit=limit)

    # owners (the HTTP API's producers)
    def set_owner(self, kind: str, rec_id: str, producer: str) -> None:
        """``producer`` made the payment or check ``rec_id`` (kept for the retention period)."""
        self.r.set(self.store.keys.owner(kind, rec_id), producer, ex=self.store.retention_s)

    def owner(self, kind: str, rec_id: str) -> str | None:
        got = self.r.get(self.store.keys.owner(kind, rec_id))
        return str(got) if got is not None else None

    def lock(self, pay_id: str, ttl_s: float) -> str | None:
        """One worker at a time talks to bePaid about a payment; returns a token or None."""
        token = new_token()
        ok = self.store.locks.take(self.store.keys.pay_lock(pay_id), token, ttl_s)
        return token if ok else None

    def unlock(self, pay_id: str, token: str) -> None:
        """Let go of the payment, only if this worker still holds it (core.locks)."""
        self.store.locks.release(self.store.keys.pay_lock(pay_id), token)

    def apply(self, pay_id: str, tx: Transaction, *, source: str,
              lookup_after_s: float) -> bool:
        """Apply what bePaid says of a payment (answer, lookup or notification); returns True
        when the status changed. Idempotent: the same news twice changes nothing, and a late
        ``pending`` never undoes a final status. A transaction that does not match the record
        (another tracking id, uid, amount or currency) is refused with ``ValueError``."""
        rec = self.find_payment(pay_id)
        if rec is None:
            raise UnknownMessage(pay_id)
        if tx.tracking_id is not None and tx.tracking_id != pay_id:
            raise ValueError(f"transaction {tx.uid} has another tracking_id")
        if (tx.amount is not None and str(tx.amount) != rec.get("amount")) or \
                (tx.currency is not None and tx.currency != rec.get("currency")):
            raise ValueError(f"transaction {tx.uid} is for {tx.amount} {tx.currency}, the "
                             f"payment for {rec.get('amount')} {rec.get('currency')}")
        if rec.get("uid") and rec["uid"] != tx.uid:
            raise ValueError(f"transaction {tx.uid} is not this payment's ({rec['uid']})")
        account = rec["account"]
        fields: dict[str, Any] = {"uid": tx.uid, "provider_status": tx.raw_status,
                  "provider_message": tx.message, "inflight_ms": "", "source": source}
        if tx.status is PaymentStatus.PENDING:
            change = self.move_payment(pay_id, PaymentStatus.PENDING, account=account,
                                       pending_ms=rec.get("pending_ms") or now_ms(), **fields)
            if change.changed:
                self.schedule_lookup(pay_id, account, now_ms() + int(lookup_after_s * 1000))
            return change.changed
        change = self.move_payment(pay_id, tx.status, account=account, final_ms=now_ms(),
                                   reason=tx.message or "", **fields)
        if change.changed:
            log.info("payment %s: %s (bePaid %s, via %s)", pay_id, tx.status.value,
                     tx.raw_status, source)
        return change.changed

    # checks
    def create_check(self, check_id: str, fields: Mapping[str, Any]) -> bool:
        return self.checks.create(check_id, fields, next_check_ms=now_ms(), reason=None)

    def check(self, check_id: str) -> dict[str, str]:
        return self.checks.get(check_id)

    def find_check(self, check_id: str) -> dict[str, str] | None:
        return self.checks.find(check_id)

    def delete_check(self, check_id: str) -> None:
        self.checks.delete(check_id)

    def move_check(self, check_id: str, status: CheckStatus | str, *, reason: str = "",
                   **fields: Any) -> Transition[CheckStatus]:
        return self.checks.transition(check_id, status, reason=reason, **fields)

    def incr_check(self, check_id: str, field: str, by: int = 1) -> int:
        """Count on a check record (``attempts``); returns the new count."""
        return self.checks.incr(check_id, field, by)

"""MTS Money payments: the record contract shared by producers, workers and the webhook receiver.

Two kinds of record, each a Redis hash with its own status history, written through the same
Lua scripts as messages (``lua/create.lua``, ``lua/transition.lua``), so a final status never
changes and a status never moves back (a late ``pending`` cannot undo ``successful``):

    ns:pay:<id>               hash    a payment; ``tracking_id`` at bePaid is its id
    ns:pay:<id>:history       list    its JSON status events, oldest first
    ns:pay:due:<account>      zset    id -> when the pending sweep should next look it up (ms)
    ns:mtscheck:<id>          hash    a service-activation check and its typed result
    ns:mtscheck:<id>:history  list
    ns:mtscheck:open          zset    checks without a result yet
    ns:payments:events        stream  every status change of payments and checks

Payment statuses (bePaid's own status is kept raw in ``provider_status``)::

    queued ──▶ pending ──▶ successful | failed | expired
       │                    (bePaid's transaction status; webhook, lookup or sweep)
       ├──▶ declined   the number needs the terms accepted and the customer declined:
       │               nothing was sent to bePaid, nothing charged
       └──▶ rejected   bePaid refused the request, or the number is not MTS / invalid

Amounts are integers in minor units (kopecks for BYN) everywhere; never floats.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core import contracts as _contracts
from core.errors import UnknownMessage
from core.store import Store, _lua, _s, now_ms

log = logging.getLogger("gonets.payments")

# --- statuses ------------------------------------------------------------------------------


class PaymentStatus(StrEnum):
    QUEUED = "queued"
    PENDING = "pending"
    SUCCESSFUL = "successful"
    FAILED = "failed"
    EXPIRED = "expired"
    REJECTED = "rejected"
    DECLINED = "declined"

    @property
    def final(self) -> bool:
        return self not in (PaymentStatus.QUEUED, PaymentStatus.PENDING)

    @property
    def rank(self) -> int:
        return {PaymentStatus.QUEUED: 0, PaymentStatus.PENDING: 1}.get(self, 2)


class CheckStatus(StrEnum):
    QUEUED = "queued"
    DONE = "done"
    #: bePaid could not be asked (gave up after retries); ``reason`` says why
    ERROR = "error"

    @property
    def final(self) -> bool:
        return self is not CheckStatus.QUEUED

    @property
    def rank(self) -> int:
        return 0 if self is CheckStatus.QUEUED else 2


class CheckResult(StrEnum):
    """The one typed answer of a service-activation check."""

    #: MTS Money is active: pay with ``confirm_agreement=already_accepted``
    ACTIVE = "active"
    #: an MTS number without MTS Money: the customer must accept the terms (``accept``)
    MUST_ACCEPT_TERMS = "must_accept_terms"
    #: the number is not an MTS number: MTS Money cannot be used
    NOT_MTS = "not_mts"
    #: the number is not a valid phone number
    INVALID_PHONE = "invalid_phone"
    #: bePaid refused the check with a code Gonets does not know (kept raw in ``code``)
    REFUSED = "refused"

    @property
    def payable(self) -> bool:
        return self in (CheckResult.ACTIVE, CheckResult.MUST_ACCEPT_TERMS)


class CustomerAnswer(StrEnum):
    """What the customer said to the MTS Money terms (asked only when the check says so)."""

    ACCEPT = "accept"
    DECLINE = "decline"


def confirm_agreement(result: CheckResult, answer: CustomerAnswer | None) -> str | None:
    """bePaid's ``confirm_agreement`` for a check result and the customer's answer.

    ``None`` means: do not send a payment at all (the customer declined or was not asked, or
    the number cannot pay with MTS Money). ``decline`` is never sent: it cannot charge.
    """
    if result is CheckResult.ACTIVE:
        return "already_accepted"
    if result is CheckResult.MUST_ACCEPT_TERMS and answer is CustomerAnswer.ACCEPT:
        return "accept"
    return None


# --- bePaid transactions (payment answers, lookups and notifications share one shape) ------

#: bePaid transaction status -> Gonets payment status. Unknown statuses count as pending
#: (kept raw, looked up again): a status Gonets cannot read must never close a payment.
STATUS_MAP: dict[str, PaymentStatus] = {
    "initial": PaymentStatus.PENDING,
    "pending": PaymentStatus.PENDING,
    "incomplete": PaymentStatus.PENDING,
    "successful": PaymentStatus.SUCCESSFUL,
    "failed": PaymentStatus.FAILED,
    "expired": PaymentStatus.EXPIRED,
    "error": PaymentStatus.REJECTED,
    "deleted": PaymentStatus.FAILED,
}


@dataclass(frozen=True)
class Transaction:
    uid: str
    status: PaymentStatus
    raw_status: str
    tracking_id: str | None = None
    amount: int | None = None
    currency: str | None = None
    message: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class _Tx(BaseModel):
    model_config = ConfigDict(extra="ignore")

    uid: str = Field(min_length=1, max_length=128)
    status: str = Field(min_length=1, max_length=64)
    tracking_id: str | None = Field(None, max_length=255)
    amount: int | None = Field(None, strict=True, ge=0)
    currency: str | None = Field(None, max_length=8)
    message: str | None = Field(None, max_length=4096)
    type: str | None = None
    method_type: str | None = None


def parse_transaction(data: Any) -> Transaction:
    """One bePaid transaction object. Raises ValueError on anything malformed."""
    if not isinstance(data, dict):
        raise ValueError("a transaction must be a JSON object")
    try:
        tx = _Tx.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"malformed transaction: {exc.errors()[0]['msg']}") from None
    raw = tx.status
    status = STATUS_MAP.get(raw, PaymentStatus.PENDING)
    message = tx.message
    payment = data.get("payment")
    if message is None and isinstance(payment, dict) and isinstance(payment.get("message"), str):
        message = payment["message"]
    return Transaction(uid=tx.uid, status=status, raw_status=raw, tracking_id=tx.tracking_id,
                       amount=tx.amount, currency=tx.currency, message=message)


def parse_transaction_envelope(data: Any) -> Transaction:
    """``{"transaction": {...}}``: a payment answer, a lookup answer or a notification."""
    if not isinstance(data, dict) or "transaction" not in data:
        raise ValueError("expected an object with a 'transaction'")
    return parse_transaction(data["transaction"])


def parse_transactions(data: Any) -> list[Transaction]:
    """``{"transactions": [...]}`` (lookup by tracking_id); one ``transaction`` is accepted too."""
    if isinstance(data, dict) and isinstance(data.get("transactions"), list):
        return [parse_transaction(t) for t in data["transactions"]]
    if isinstance(data, dict) and "transaction" in data:
        return [parse_transaction(data["transaction"])]
    raise ValueError("expected an object with 'transactions'")


#: when one tracking_id has several transactions (it must not), the one that counts
_PREFERENCE = [PaymentStatus.SUCCESSFUL, PaymentStatus.PENDING, PaymentStatus.FAILED,
               PaymentStatus.EXPIRED, PaymentStatus.REJECTED]


def pick(txs: list[Transaction]) -> Transaction | None:
    if not txs:
        return None
    return sorted(txs, key=lambda t: _PREFERENCE.index(t.status)
                  if t.status in _PREFERENCE else 99)[0]


#: currencies MTS Money (through bePaid) takes; an account may narrow this in its options
CURRENCIES = frozenset({"BYN"})
#: largest amount accepted, in minor units (a guard against unit mistakes: 10 000 000.00 BYN)
MAX_AMOUNT_MINOR = 1_000_000_000


# --- queues and actors ---------------------------------------------------------------------

CHECK_MTS_MONEY = "check_mts_money"
PAY_MTS_MONEY = "pay_mts_money"
LOOKUP_PAYMENT = "lookup_payment"
#: the pending sweep (core.contracts): ``sweep_pending_payments()`` on PAYMENTS_SWEEP_QUEUE, as
#: the scheduler fires it (every bePaid account), or ``sweep_pending_payments(account)`` on
#: ``payments_sweep_queue(account)`` for one account
SWEEP_PENDING_PAYMENTS = _contracts.SWEEP_PENDING_PAYMENTS
PAYMENTS_SWEEP_QUEUE = _contracts.PAYMENTS_SWEEP_QUEUE


def payments_check_queue(account: str) -> str:
    return f"payments.{account}.check"


def payments_pay_queue(account: str) -> str:
    return f"payments.{account}.pay"


def payments_sweep_queue(account: str) -> str:
    """Lookups of pending payments and the sweep that finds them."""
    return f"payments.{account}.lookup"


def payments_pool_queues(account: str) -> list[str]:
    """Every queue the ``payments`` pool of one bePaid account consumes (checks first: a
    customer is waiting for those), and the scheduler's sweep queue every such pool shares."""
    return [payments_check_queue(account), payments_pay_queue(account),
            payments_sweep_queue(account), PAYMENTS_SWEEP_QUEUE]


# --- store ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    changed: bool
    status: str


class PaymentStore:
    """Payment and check records on top of the Gonets ``Store`` (same Redis, same scripts)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.r = store.r
        self._transition = self.r.register_script(_lua("transition.lua"))
        self._create = self.r.register_script(_lua("create.lua"))

    # keys
    def pay_key(self, pay_id: str) -> str:
        return self.store.key("pay", pay_id)

    def check_key(self, check_id: str) -> str:
        return self.store.key("mtscheck", check_id)

    def due_key(self, account: str) -> str:
        return self.store.key("pay", "due", account)

    @property
    def events_key(self) -> str:
        return self.store.key("payments", "events")

    def _pay_keys(self, pay_id: str, account: str) -> list[str]:
        k = self.pay_key(pay_id)
        return [k, k + ":history", self.events_key, self.due_key(account)]

    def _check_keys(self, check_id: str) -> list[str]:
        k = self.check_key(check_id)
        return [k, k + ":history", self.events_key, self.store.key("mtscheck", "open")]

    # generic
    def _create_record(self, keys: list[str], rec_id: str, kind: str, status: str,
                       fields: Mapping[str, Any], due_ms: int) -> bool:
        ts = now_ms()
        record = {k: _s(v) for k, v in fields.items() if v is not None}
        record.update(id=rec_id, kind=kind, status=status, status_rank="0", created_ms=str(ts),
                      updated_ms=str(ts), attempts=record.get("attempts", "0"))
        event = json.dumps({"id": rec_id, "kind": kind, "status": status, "at_ms": ts})
        flat: list[str] = []
        for k, v in record.items():
            flat += [k, v]
        return bool(self._create(keys=keys, args=[rec_id, due_ms, self.store.events_maxlen,
                                                  event, status, *flat]))

    def _move(self, keys: list[str], rec_id: str, kind: str, status: str, rank: int,
              final: bool, reason: str, fields: Mapping[str, Any]) -> Change:
        ts = now_ms()
        extra = {k: _s(v) for k, v in fields.items() if v is not None}
        if reason:
            extra["reason"] = reason
        event: dict[str, Any] = {"id": rec_id, "kind": kind, "status": status, "at_ms": ts}
        if reason:
            event["reason"] = reason
        for k in ("provider_status", "error_code", "uid", "source"):
            if extra.get(k):
                event[k] = extra[k]
        flat: list[str] = []
        for k, v in extra.items():
            flat += [k, v]
        res = int(self._transition(
            keys=keys, args=[status, rank, "1" if final else "0", ts, self.store.retention_s,
                             self.store.events_maxlen, rec_id, json.dumps(event), *flat]))
        if res == -1:
            raise UnknownMessage(rec_id)
        if res in (1, 2):
            return Change(changed=res == 1, status=status)
        return Change(changed=False, status=self.r.hget(keys[0], "status") or status)

    # payments
    def create_payment(self, pay_id: str, fields: Mapping[str, Any], *, account: str,
                       due_ms: int) -> bool:
        return self._create_record(self._pay_keys(pay_id, account), pay_id, "payment",
                                   PaymentStatus.QUEUED.value, {**fields, "account": account},
                                   due_ms)

    def payment(self, pay_id: str) -> dict[str, str]:
        rec = self.r.hgetall(self.pay_key(pay_id))
        if not rec:
            raise UnknownMessage(pay_id)
        return rec

    def find_payment(self, pay_id: str) -> dict[str, str] | None:
        return self.r.hgetall(self.pay_key(pay_id)) or None

    def delete_payment(self, pay_id: str, account: str) -> None:
        keys = self._pay_keys(pay_id, account)
        self.r.delete(keys[0], keys[1])
        self.r.zrem(keys[3], pay_id)

    def history(self, rec_id: str, *, check: bool = False) -> list[dict[str, Any]]:
        key = (self.check_key(rec_id) if check else self.pay_key(rec_id)) + ":history"
        return [json.loads(x) for x in self.r.lrange(key, 0, -1)]

    def update_payment(self, pay_id: str, **fields: Any) -> None:
        """Set fields without changing the status (only on an existing record)."""
        values = {k: _s(v) for k, v in fields.items() if v is not None}
        if not values:
            return
        pipe = self.r.pipeline()
        pipe.exists(self.pay_key(pay_id))
        pipe.hset(self.pay_key(pay_id), mapping=values)
        exists, _ = pipe.execute()
        if not exists:  # never resurrect an expired record as a fragment
            self.r.delete(self.pay_key(pay_id))
            raise UnknownMessage(pay_id)

    def move_payment(self, pay_id: str, status: PaymentStatus | str, *, reason: str = "",
                     account: str | None = None, **fields: Any) -> Change:
        st = PaymentStatus(status)
        if account is None:
            account = self.r.hget(self.pay_key(pay_id), "account")
            if account is None:
                raise UnknownMessage(pay_id)
        return self._move(self._pay_keys(pay_id, account), pay_id, "payment", st.value, st.rank,
                          st.final, reason, fields)

    def schedule_lookup(self, pay_id: str, account: str, at_ms: int) -> None:
        """When the sweep should next look this (non-final) payment up at bePaid."""
        self.r.zadd(self.due_key(account), {pay_id: at_ms}, xx=True)

    def due(self, account: str, *, now: int | None = None, limit: int = 100) -> list[str]:
        return list(self.r.zrangebyscore(self.due_key(account), 0, now or now_ms(), start=0,
                                         num=limit))

    def lock(self, pay_id: str, ttl_s: float) -> str | None:
        """One worker at a time talks to bePaid about a payment; returns a token or None."""
        token = str(now_ms())
        ok = self.r.set(self.pay_key(pay_id) + ":lock", token, nx=True, px=int(ttl_s * 1000))
        return token if ok else None

    def unlock(self, pay_id: str, token: str) -> None:
        key = self.pay_key(pay_id) + ":lock"
        if self.r.get(key) == token:
            self.r.delete(key)

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
        fields = {"uid": tx.uid, "provider_status": tx.raw_status,
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
        return self._create_record(self._check_keys(check_id), check_id, "check",
                                   CheckStatus.QUEUED.value, fields, now_ms())

    def check(self, check_id: str) -> dict[str, str]:
        rec = self.r.hgetall(self.check_key(check_id))
        if not rec:
            raise UnknownMessage(check_id)
        return rec

    def find_check(self, check_id: str) -> dict[str, str] | None:
        return self.r.hgetall(self.check_key(check_id)) or None

    def delete_check(self, check_id: str) -> None:
        keys = self._check_keys(check_id)
        self.r.delete(keys[0], keys[1])
        self.r.zrem(keys[3], check_id)

    def move_check(self, check_id: str, status: CheckStatus | str, *, reason: str = "",
                   **fields: Any) -> Change:
        st = CheckStatus(status)
        return self._move(self._check_keys(check_id), check_id, "check", st.value, st.rank,
                          st.final, reason, fields)

    def incr(self, key: str, field: str, by: int = 1) -> int:
        return int(self.r.hincrby(key, field, by))

"""Per-process state of a worker: settings, store, provider instances, account pauses.

One ``Runtime`` per process holds what every actor shares: the message store and the payment
records beside it, one provider per SMS account and one payment provider per payments account
(built on first use, closed together), and the account pause/alert state."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from core.account_state import AccountState
from core.errors import AccountProblem
from core.observability.logs import MESSAGE_ACTORS
from core.observability.tracing import PAYMENT_ACTORS
from core.payment_store import PaymentStore
from core.replies import text_dict
from core.settings import Account, Settings, get_settings
from core.store import Store, redis_client
from workers import providers
from workers.providers.base import Outgoing, Provider, ProviderContext
from workers.providers.payment import PaymentProvider

log = logging.getLogger("gonets.worker")


@dataclass
class Runtime:
    settings: Settings
    store: Store

    def __post_init__(self) -> None:
        self._providers: dict[str, Provider] = {}
        self._payment_providers: dict[str, PaymentProvider] = {}
        self._lock = threading.Lock()
        #: payment and MTS Money check records (same Redis and scripts as the messages)
        self.payments = PaymentStore(self.store)
        self._incident: dict[str, bool] = {}
        #: the account whose pool this process is (``gonets worker --pool``); None elsewhere
        self.pool: str | None = None
        self.accounts = AccountState.of(self.store)
        from workers.outcomes import Outcomes  # it acts through this runtime

        #: applies every fact to its record (``workers/outcomes.py``)
        self.outcomes = Outcomes(self)
        # providers keep their own keys (SMPP maps, leases, OAuth token) on the store's client
        # and hand what arrives on its own (SMPP receipts) to the outcomes module
        self.ctx = ProviderContext(self.settings, self.store.r, facts=self.outcomes)

    def provider(self, account: Account) -> Provider:
        with self._lock:
            p = self._providers.get(account.name)
            if p is None:
                p = self._providers[account.name] = providers.build(account, self.ctx)
            return p

    def payment_provider(self, account: Account) -> PaymentProvider:
        with self._lock:
            p = self._payment_providers.get(account.name)
            if p is None:
                p = self._payment_providers[account.name] = providers.build_payments(account,
                                                                                     self.ctx)
            return p

    def close(self) -> None:
        with self._lock:
            for p in self._providers.values():
                p.close()
            for pp in self._payment_providers.values():
                pp.close()
            self._providers.clear()
            self._payment_providers.clear()

    # --- account pause and alerts (kept in Redis by core.account_state)
    def pause_left_s(self, account: str) -> float:
        """Seconds the account's pool stays paused (0: not paused). Also notes whether an
        incident is open, so ``resume`` costs nothing in the common case."""
        left, self._incident[account] = self.accounts.pause_state(account)
        return left

    def find_for_send(self, msg_id: str) -> tuple[dict[str, str] | None, float | None]:
        """``store.find(msg_id)`` and, in a pool's process, ``pause_left_s`` of the pool's
        account, in one round trip (``None`` for the pause elsewhere: ask for it)."""
        if self.pool is None:
            return self.store.find(msg_id), None
        pipe = self.store.r.pipeline(transaction=False)
        pipe.hgetall(self.store.record_key(msg_id))
        self.accounts.queue_pause_state(pipe, self.pool)
        raw, ttl, incident = pipe.execute()
        left, self._incident[self.pool] = self.accounts.read_pause_state(ttl, incident)
        return text_dict(raw) or None, left

    def pause_detail(self, account: str) -> str:
        """Why the account is paused, in words ("" if it is not)."""
        raw = self.accounts.overview([account])[0].incident
        if not raw:
            return ""
        info = json.loads(raw)
        code = f", code {info['code']}" if info.get("code") else ""
        return f"{info.get('detail')} ({info.get('alert')}{code}); tried again after the pause"

    def pause(self, account: str, exc: AccountProblem, *, started_ms: int | None = None) -> bool:
        """Pause the account's pool; returns True the first time in an incident (alert then).

        ``started_ms``: when the failed request was sent. A failure of a request sent before
        the account last recovered belongs to the incident that is over: it neither pauses
        the pool again nor alerts (the message is simply retried)."""
        if started_ms is not None and self.accounts.resumed_after(account, started_ms):
            return False
        info = json.dumps({"alert": exc.alert, "code": exc.code, "detail": exc.detail,
                           "since": time.time()})
        first = self.accounts.open_incident(account, exc.alert, info,
                                            self.settings.account_pause_s)
        if first:
            log.error("account %s paused: %s (code %s); messages are kept and retried",
                      account, exc.detail, exc.code,
                      extra={"gonets_alert": exc.alert, "account": account})
        return first

    def resume(self, account: str) -> None:
        """The account works again: clear the pause and the incident's alerts so a new
        incident alerts (the low-balance alert stays: it is the balance check's)."""
        if not self._incident.get(account):
            return
        self._incident[account] = False
        if self.accounts.close_incident(account):
            log.warning("account %s works again; pool resumed", account)


def outgoing(rec: dict[str, str]) -> Outgoing:
    opts: dict[str, Any] = json.loads(rec["options"]) if rec.get("options") else {}
    return Outgoing(
        id=rec["id"], seq=int(rec.get("seq", "0")), phone=rec["phone"], text=rec.get("text", ""),
        sender=rec.get("sender") or None, parts=int(rec.get("parts", "1")),
        encoding=rec.get("encoding", "gsm7"), kind=rec.get("kind", "transactional"),
        lane=rec.get("lane", "bulk"),
        validity_min=int(rec["validity_min"]) if rec.get("validity_min") else None,
        options=opts, provider_id=rec.get("provider_id") or None,
        inflight_ms=int(rec.get("inflight_ms") or 0))


_runtime: Runtime | None = None
_rt_lock = threading.Lock()


def get_runtime() -> Runtime:
    global _runtime
    with _rt_lock:
        if _runtime is None:
            s = get_settings()
            _runtime = Runtime(s, Store(redis_client(s.redis_url), namespace=s.namespace,
                                        retention_s=s.retention_s,
                                        events_maxlen=s.events_maxlen))
        return _runtime


def record_outcome(actor: str, record_id: str) -> tuple[object, object] | None:
    """``(status, error code)`` of the record a job of ``actor`` worked on, for the job's
    ``outcome`` tag in tracing (``core.observability.tracing.set_record_reader``)."""
    rt = get_runtime()
    if actor in MESSAGE_ACTORS:  # two fields, not the whole record: this runs for every job
        status, code = rt.store.r.hmget(rt.store.record_key(record_id), "status", "error_code")
        return status, code
    if actor in PAYMENT_ACTORS:
        pay = (rt.payments.find_check if actor == "check_mts_money"
               else rt.payments.find_payment)(record_id) or {}
        return pay.get("status"), pay.get("code") or pay.get("error_code")
    return None

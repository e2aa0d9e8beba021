"""Per-process state of a worker: settings, store, provider instances, account pauses."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from core.errors import AccountProblem
from core.settings import Account, Settings, get_settings
from core.store import Store, redis_client
from workers import providers
from workers.providers.base import Outgoing, Provider, ProviderContext

log = logging.getLogger("gonets.worker")

#: one alert per account problem per this long
ALERT_EVERY_S = 3600


@dataclass
class Runtime:
    settings: Settings
    store: Store

    def __post_init__(self) -> None:
        self._providers: dict[str, Provider] = {}
        self._lock = threading.Lock()
        self._incident: dict[str, bool] = {}
        self.ctx = ProviderContext(self.settings, self.store.r)

    def provider(self, account: Account) -> Provider:
        with self._lock:
            p = self._providers.get(account.name)
            if p is None:
                p = self._providers[account.name] = providers.build(account, self.ctx)
            return p

    def close(self) -> None:
        with self._lock:
            for p in self._providers.values():
                p.close()
            self._providers.clear()

    # --- account pause and alerts
    def pause_left_s(self, account: str) -> float:
        """Seconds the account's pool stays paused (0: not paused). Also notes whether an
        incident is open, so ``resume`` costs nothing in the common case."""
        pipe = self.store.r.pipeline(transaction=False)
        pipe.pttl(self.store.key("pause", account))
        pipe.exists(self.store.key("incident", account))
        ttl, incident = pipe.execute()
        self._incident[account] = bool(incident)
        return max(ttl, 0) / 1000.0

    def pause(self, account: str, exc: AccountProblem, *, started_ms: int | None = None) -> bool:
        """Pause the account's pool; returns True the first time in an incident (alert then).

        ``started_ms``: when the failed request was sent. A failure of a request sent before
        the account last recovered belongs to the incident that is over: it neither pauses
        the pool again nor alerts (the message is simply retried)."""
        if started_ms is not None:
            resumed = self.store.r.get(self.store.key("resumed", account))
            if resumed is not None and int(resumed) >= started_ms:
                return False
        info = json.dumps({"alert": exc.alert, "code": exc.code, "detail": exc.detail,
                           "since": time.time()})
        self.store.r.set(self.store.key("pause", account), info,
                         px=int(self.settings.account_pause_s * 1000))
        self.store.r.set(self.store.key("incident", account), info)
        first = bool(self.store.r.set(self.store.key("alert", account, exc.alert), info,
                                      nx=True, ex=ALERT_EVERY_S))
        if first:
            log.error("account %s paused: %s (code %s); messages are kept and retried",
                      account, exc.detail, exc.code,
                      extra={"gonets_alert": exc.alert, "account": account})
        return first

    def resume(self, account: str) -> None:
        """The account works again: clear the pause and the alert so a new incident alerts."""
        if not self._incident.get(account):
            return
        r = self.store.r
        self._incident[account] = False
        if r.delete(self.store.key("incident", account)):
            r.set(self.store.key("resumed", account), str(int(time.time() * 1000)),
                  ex=ALERT_EVERY_S)
            r.delete(self.store.key("pause", account))
            for key in r.scan_iter(self.store.key("alert", account, "*")):
                r.delete(key)
            log.warning("account %s works again; pool resumed", account)


def outgoing(rec: dict[str, str]) -> Outgoing:
    opts: dict[str, Any] = json.loads(rec["options"]) if rec.get("options") else {}
    return Outgoing(
        id=rec["id"], seq=int(rec.get("seq", "0")), phone=rec["phone"], text=rec.get("text", ""),
        sender=rec.get("sender") or None, parts=int(rec.get("parts", "1")),
        encoding=rec.get("encoding", "gsm7"), kind=rec.get("kind", "transactional"),
        lane=rec.get("lane", "bulk"),
        validity_min=int(rec["validity_min"]) if rec.get("validity_min") else None,
        options=opts, provider_id=rec.get("provider_id") or None)


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

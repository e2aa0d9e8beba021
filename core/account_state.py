"""What Redis keeps about each provider account: pauses, incidents, alerts, the last balance.

Written by the workers (``workers/runtime.py`` pauses a pool on an account problem and resumes
it; the balance check records the balance and the low-balance alert), read by the scheduler's
``/metrics`` (``core/observability.py``).  Keys (``core/keys.py``):

    ns:pause:<acct>              string  JSON why; expires after account_pause_s
    ns:incident:<acct>           string  JSON of the open incident; deleted when it works again
    ns:resumed:<acct>            string  when it last worked again (ms); 1 h
    ns:alert:<acct>:<kind>       string  one alert per incident and kind; 1 h
    ns:alert:<acct>:low_balance  string  the low-balance alert: open until the balance recovers
    ns:balance:<acct>            string  the last balance read

Two kinds of alert live side by side: an *incident* alert (no funds, sender, credentials…)
belongs to the incident and closes with it; the *low-balance* alert belongs to the balance
check and closes only when a balance read is back above the threshold.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis

from core.keys import LOW_BALANCE, Keys

if TYPE_CHECKING:
    from core.store import Store

#: one alert per account problem per this long
ALERT_EVERY_S = 3600


def _ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class AccountView:
    #: the open incident's JSON ({alert, code, detail, since}), None when there is none
    incident: str | None
    #: seconds the pool stays paused (0: not paused)
    paused_s: float
    low_balance: bool


class AccountState:
    def __init__(self, r: redis.Redis, namespace: str) -> None:
        self.r = r
        self.keys = Keys(namespace)

    @classmethod
    def of(cls, store: Store) -> AccountState:
        """The account state beside ``store`` (same Redis, same namespace)."""
        return cls(store.r, store.ns)

    # --- pauses and incidents
    def pause_state(self, account: str) -> tuple[float, bool]:
        """(seconds the pool stays paused, whether an incident is open), one round trip."""
        pipe = self.r.pipeline(transaction=False)
        self.queue_pause_state(pipe, account)
        return self.read_pause_state(*pipe.execute())

    def queue_pause_state(self, pipe: Any, account: str) -> None:
        """Queue ``pause_state``'s two reads on ``pipe`` (``read_pause_state`` reads their
        replies): a send reads them with its record (``Runtime.find_for_send``)."""
        pipe.pttl(self.keys.pause(account))
        # a run of failed tries (core/routing.py) is closed by a send that works, as an incident
        pipe.exists(self.keys.incident(account), self.keys.unreach(account))

    @staticmethod
    def read_pause_state(ttl: Any, incident: Any) -> tuple[float, bool]:
        return max(int(ttl), 0) / 1000.0, bool(incident)

    def resumed_after(self, account: str, started_ms: int) -> bool:
        """True when the account worked again at or after ``started_ms``."""
        resumed = self.r.get(self.keys.resumed(account))
        return resumed is not None and int(resumed) >= started_ms

    def open_incident(self, account: str, kind: str, info: str, pause_s: float) -> bool:
        """Pause the pool for ``pause_s`` and note the incident; True when the alert of
        ``kind`` is the first of this incident (raise it then)."""
        if kind == LOW_BALANCE:
            raise ValueError("the low-balance alert is the balance check's, not an incident's")
        pipe = self.r.pipeline(transaction=False)
        pipe.set(self.keys.pause(account), info, px=max(int(pause_s * 1000), 1))
        pipe.set(self.keys.incident(account), info)
        pipe.set(self.keys.alert(account, kind), info, nx=True, ex=ALERT_EVERY_S)
        return bool(pipe.execute()[2])

    def close_incident(self, account: str) -> bool:
        """The account works again: clear the pause and the incident's alerts (so a new
        incident alerts), keep the low-balance alert.  True if an incident was open."""
        pipe = self.r.pipeline(transaction=False)
        pipe.delete(self.keys.incident(account))
        pipe.delete(self.keys.unreach(account))  # the provider answers again (core/routing.py)
        if not pipe.execute()[0]:
            return False
        self.r.set(self.keys.resumed(account), str(_ms()), ex=ALERT_EVERY_S)
        self.r.delete(self.keys.pause(account))
        incident_alerts = [k for k in self.r.scan_iter(self.keys.alerts(account))
                           if k != self.keys.alert(account, LOW_BALANCE)]
        if incident_alerts:
            self.r.delete(*incident_alerts)
        return True

    # --- alerts without a pause (lookups that keep failing)
    def open_alert(self, account: str, kind: str, info: str) -> bool:
        """Note an alert of ``kind`` that pauses nothing; True the first time in an incident
        (raise it then). It closes with ``close_alert`` (or ``close_incident``)."""
        if kind == LOW_BALANCE:
            raise ValueError("the low-balance alert is the balance check's")
        return bool(self.r.set(self.keys.alert(account, kind), info, nx=True, ex=ALERT_EVERY_S))

    def close_alert(self, account: str, kind: str) -> bool:
        """The condition is over: a new one alerts again. True when the alert was open."""
        return bool(self.r.delete(self.keys.alert(account, kind)))

    # --- balance and its alert
    def record_balance(self, account: str, amount: str) -> None:
        self.r.set(self.keys.balance(account), amount)

    def open_low_balance(self, account: str, amount: str) -> bool:
        """True the first time the balance is seen low (alert then); open until it recovers."""
        return bool(self.r.set(self.keys.alert(account, LOW_BALANCE), amount, nx=True))

    def close_low_balance(self, account: str) -> bool:
        """True when a low-balance alert was open."""
        return bool(self.r.delete(self.keys.alert(account, LOW_BALANCE)))

    # --- readers (metrics, GET /v1/accounts)
    def overview(self, accounts: list[str]) -> list[AccountView]:
        """Each account's open incident, pause and low-balance alert, in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        for a in accounts:
            pipe.get(self.keys.incident(a))
            pipe.pttl(self.keys.pause(a))
            pipe.exists(self.keys.alert(a, LOW_BALANCE))
        got = pipe.execute()
        return [AccountView(incident=got[3 * i], paused_s=max(int(got[3 * i + 1]), 0) / 1000,
                            low_balance=bool(got[3 * i + 2])) for i in range(len(accounts))]

    def balance(self, account: str) -> float | None:
        b = self.r.get(self.keys.balance(account))
        return float(b) if b is not None else None

    def paused(self, account: str) -> bool:
        return bool(self.r.exists(self.keys.pause(account)))

    def open_alerts(self, account: str) -> list[str]:
        """The kinds of every open alert of ``account``."""
        prefix = self.keys.alert(account, "")
        return sorted(k[len(prefix):] for k in self.r.scan_iter(self.keys.alerts(account)))

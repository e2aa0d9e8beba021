"""The flood rule per subscriber (smsc-smpp.md: the provider blocks more than 50 messages to one
number sent with gaps under 30 s). Held here, before the provider sees it.

The count is kept per provider *family* and number, so it holds across every producer, every
pod and every account that goes through the same provider (SMSC over HTTP and over SMPP are
one provider to the subscriber's operator).  A message of a route of several accounts
(``core/routing.py``) counts under the route instead (``@<route>``): the subscriber sees one
burst, whichever of its accounts each message went through."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis

from core.keys import Keys
from core.settings import Account

#: provider type -> the provider whose flood rule it is under
FAMILY = {
    "smsc_http": "smsc", "smsc_smpp": "smsc",
    "mts_rest": "mts", "mts_smpp": "mts",
    "sms2_http": "sms2",
}


def script_text() -> str:
    return resources.files("workers.traffic").joinpath("flood.lua").read_text(encoding="utf-8")


@dataclass(frozen=True)
class FloodCount:
    """One message's count under the rule: ``flood.lua``'s key and its first two arguments
    (the third, when it reaches the provider, is the pacing slot's: ``Pacer.ticket``)."""

    key: str
    max_messages: int
    gap_ms: int


class FloodHeld(Exception):
    """The rule holds the message: its number's burst ends ``wait_s`` from now (nothing was
    counted; the pacing slot booked with the count is left unused)."""

    def __init__(self, wait_s: float) -> None:
        super().__init__(f"flood rule: burst ends in {wait_s:.3f} s")
        self.wait_s = wait_s


class FloodGuard:
    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.ns = namespace
        self.keys = Keys(namespace)
        self._client = client
        self._script = client.register_script(script_text())

    def key(self, account: Account, phone: str, route: str | None = None) -> str:
        family = "@" + route if route else FAMILY.get(account.provider, account.provider)
        return self.keys.flood(family, phone)

    def count(self, account: Account, phone: str, route: str | None = None) -> FloodCount:
        """What ``admit`` asks ``flood.lua``, for the pacing script to ask in its own step."""
        lim = account.limits
        return FloodCount(self.key(account, phone, route), lim.flood_max_messages,
                          int(lim.flood_gap_s * 1000))

    def saturate(self, account: Account, phone: str, route: str | None = None) -> None:
        """The provider said this number had too many messages (SMSC err 251): count the
        current burst as full, so the next message to it waits for a gap."""
        key = self.key(account, phone, route)
        t = self._client.time()
        now_ms = int(t[0]) * 1000 + int(t[1]) // 1000
        gap_ms = int(account.limits.flood_gap_s * 1000)
        pipe = self._client.pipeline()
        pipe.hset(key, mapping={"n": account.limits.flood_max_messages, "last_ms": now_ms})
        pipe.pexpire(key, gap_ms + 1000)
        pipe.execute()

    def admit(self, account: Account, phone: str, in_s: float = 0.0,
              route: str | None = None) -> float:
        """Count one message to ``phone`` that reaches the provider ``in_s`` from now; 0.0 if
        it may go, else the seconds from now until the burst is over (nothing counted then)."""
        c = self.count(account, phone, route)
        ok, value = self._script(keys=[c.key], args=[c.max_messages, c.gap_ms,
                                                     max(int(in_s * 1000), 0)])
        return wait_of(ok, value)


def wait_of(ok: Any, value: Any) -> float:
    """``flood.lua``'s answer as seconds until the message may go (0.0: counted, it goes)."""
    return 0.0 if int(ok) else max(int(value), 0) / 1000.0

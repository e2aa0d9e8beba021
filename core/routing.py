"""Routes: which account a message goes to, and which it moves to when that one cannot take it.

A route (``[[routes]]`` in the config, ``core.settings.Route``) is an ordered list of SMS
accounts.  The producer (``producers/sms.py``) gives a new message to the first account of
its route whose pool is not paused (``choose``); the worker (``workers/outcomes.py``) moves a
message to the next one (``next_account`` and ``Store.move``) when its account cannot take it:

* an account problem (no funds, sender not registered, bad credentials, IP not allowed: an
  ``AccountProblem``, or a ``Permanent`` error that names an account alert);
* the account's pool is paused (an incident is open and its pause has not run out);
* the provider unreachable for ``failover_after_s`` (every try since the first failure of the
  run failed with a retry-later error: ``mark_unreachable``); the account is then paused with
  an ``unreachable`` incident, so new messages skip it too.

Never a message whose outcome is unknown (``inflight_ms`` set: it may have gone out through
the account): that one is looked up there, or waits per the account's lost-answer policy,
until its outcome is known (``Store.move`` refuses it).  A permanent rejection (a bad number)
is closed where it happened.

Failback: an account whose pause has run out gets new messages again (one of them closes its
incident by going through); messages already moved stay where they are.

Keys (``core/keys.py``):

    ns:unreach:<acct>   string  when the current run of failed tries began (ms); deleted by
                                the first send that works
    ns:failovers        hash    "<route>|<from account>|<reason>" -> messages moved (metrics)
    ns:price:<acct>     string  the price per part its provider last reported (SMSC's cost),
                                for ``prefer = "cheapest"`` where no price is configured
    ns:alert:<acct>:failover_<route>   the route's alert, one per incident of the account
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import phonenumbers
import redis

from core.keys import Keys
from core.settings import Route, Settings

log = logging.getLogger("gonets.routing")

#: an account's open-incident alert lives this long at most (as core.account_state's)
ALERT_EVERY_S = 3600
#: a message moves at most this many times (a safety net against accounts that recover and
#: fail in turn; past it the message waits on its account like an unrouted one)
MAX_MOVES = 10


def region_of(e164_digits: str) -> str | None:
    """The ISO region of a number ("BY"), None when it has none."""
    try:
        num = phonenumbers.parse("+" + e164_digits, None)
    except phonenumbers.NumberParseException:
        return None
    return phonenumbers.region_code_for_number(num)


def ordered(settings: Settings, route: Route,
            learned: dict[str, float | None] | None = None) -> list[str]:
    """The route's accounts in the order they are tried. ``prefer = "cheapest"``: by each
    account's ``price_per_part``, else the price its provider last reported (``learned``:
    SMSC's ``cost``, ``record_price``)."""
    if route.prefer != "cheapest":
        return list(route.accounts)
    known = learned or {}
    prices = {a: settings.account(a).price_per_part for a in route.accounts}
    prices = {a: p if p is not None else known.get(a) for a, p in prices.items()}
    # sorted() is stable: ties (and accounts without a price, after the priced) keep the order
    return sorted(route.accounts, key=lambda a: (prices[a] is None, prices[a] or 0.0))


def _state(r: redis.Redis, keys: Keys, settings: Settings,
           route: Route) -> tuple[list[str], dict[str, int]]:
    """(the accounts in order, ms each stays paused), one round trip."""
    unpriced = ([a for a in route.accounts if settings.account(a).price_per_part is None]
                if route.prefer == "cheapest" else [])
    pipe = r.pipeline(transaction=False)
    for a in route.accounts:
        pipe.pttl(keys.pause(a))
    for a in unpriced:
        pipe.get(keys.price(a))
    got = pipe.execute()
    n = len(route.accounts)
    left = {a: max(int(x), 0) for a, x in zip(route.accounts, got[:n], strict=True)}
    learned = {a: float(x) if x is not None else None
               for a, x in zip(unpriced, got[n:], strict=True)}
    return ordered(settings, route, learned), left


def choose(r: redis.Redis, keys: Keys, settings: Settings, route: Route) -> str:
    """The account a new message of ``route`` goes to: the first whose pool is not paused;
    when all are, the one whose pause ends first. One round trip (none for a one-account
    route)."""
    if len(route.accounts) == 1:
        return route.accounts[0]
    accounts, left = _state(r, keys, settings, route)
    free = [a for a in accounts if left[a] == 0]
    return free[0] if free else min(accounts, key=lambda a: left[a])


def next_account(r: redis.Redis, keys: Keys, settings: Settings, route: Route,
                 current: str) -> str | None:
    """Where a message of ``route`` that ``current`` cannot take goes: the next account in
    the route's order (wrapping round) whose pool is not paused; None when there is none."""
    if current not in route.accounts or len(route.accounts) == 1:
        return None
    accounts, left = _state(r, keys, settings, route)
    i = accounts.index(current)
    return next((a for a in accounts[i + 1:] + accounts[:i] if left[a] == 0), None)


def learns_price(settings: Settings, account: str) -> bool:
    """True when ``account`` has no configured price and a ``cheapest`` route orders it."""
    return settings.account(account).price_per_part is None and any(
        r.prefer == "cheapest" and account in r.accounts for r in settings.routes)


def record_price(r: redis.Redis, keys: Keys, account: str, cost: str, parts: int) -> None:
    """Keep the price per part a provider reported for a send (SMSC's ``cost``)."""
    try:
        per_part = float(cost) / max(parts, 1)
    except ValueError:
        return
    if per_part >= 0:
        r.set(keys.price(account), repr(per_part))


def mark_unreachable(r: redis.Redis, keys: Keys, account: str, now_ms: int) -> float:
    """A try on ``account`` failed with a retry-later error: note when the run of failures
    began (kept until a send works) and return how long it has lasted, in seconds."""
    pipe = r.pipeline(transaction=False)
    pipe.set(keys.unreach(account), str(now_ms), nx=True)
    pipe.get(keys.unreach(account))
    _, since = pipe.execute()
    return max(now_ms - int(since or now_ms), 0) / 1000.0


def count_failover(r: redis.Redis, keys: Keys, route: str, from_account: str,
                   reason: str) -> None:
    r.hincrby(keys.failovers(), f"{route}|{from_account}|{reason}", 1)


def route_alert(r: redis.Redis, keys: Keys, route: str, account: str, info: str) -> bool:
    """True the first time in the account's incident that ``route`` fails over from it
    (alert then); the account's recovery clears it with its other incident alerts."""
    return bool(r.set(keys.alert(account, f"failover_{route}"), info, nx=True,
                      ex=ALERT_EVERY_S))


def failovers(r: redis.Redis, keys: Keys) -> Iterable[tuple[str, str, str, int]]:
    """(route, from account, reason, messages moved) for the metrics."""
    for field, n in r.hgetall(keys.failovers()).items():
        f = field.decode() if isinstance(field, bytes) else str(field)
        route, acct, reason = ([*f.split("|"), "", ""])[:3]
        yield route, acct, reason, int(n)

"""Duplicates: the same producer, account, number, sender and text within
``Limits.duplicate_window_s`` (60 s by default; SMSC refuses an identical request within a
minute) is one message.

The producer claims a fingerprint key in Redis (SET with an expiry, in the same script that
writes the record and its job: ``core/lua/submit.lua``); a second send inside the window gets
the first message's id back and nothing new is queued.  An explicit
``idempotency_key`` (``producers/sms.py``) does the same for any window the caller picks.

Both are per *tenant*: the producer that sends (an HTTP API token's producer, a Bitrix24
installation's, ``gonets send --producer``), or ``-`` for a Python API caller that names none
(producer names start with a letter or digit, so ``-`` is no producer's).  Two producers that
send the same text to the same number get two messages, each its own id: a duplicate never
hands one tenant another's message id.  Every key is built here (``key``, ``idempotency_key``).

Key layout: ``<ns>:dup:<account>:<sha256 of tenant, number, sender, text>`` -> first message
id; ``<ns>:idem:<account>:<tenant>:<key>`` -> the id an idempotency key is bound to.
A route of several accounts (``core/routing.py``) keeps one window and one set of idempotency
keys for all of them: ``<account>`` is then ``@<route>`` (``Route.scope``), so a message is not
sent again through another account of its route.
"""

from __future__ import annotations

import hashlib
import json

from core.settings import Account
from core.store import Store

#: the tenant of a Python API caller that names no producer
NO_PRODUCER = "-"


def tenant(producer: str | None) -> str:
    """Whose window a send counts in: the producer's name, or ``-`` for none."""
    return producer or NO_PRODUCER


#: how ``json.dumps(..., ensure_ascii=False)`` writes one string (json's own C function)
_quote = json.encoder.encode_basestring


def fingerprint(producer: str | None, phone: str, sender: str | None, text: str) -> str:
    """SHA-256 of ``json.dumps([tenant, phone, sender or "", text], ensure_ascii=False)``,
    the list written directly as json writes a list of strings (the keys of messages
    accepted before stay the same: ``tests/test_producer_path.py``)."""
    raw = (f"[{_quote(tenant(producer))}, {_quote(phone)}, {_quote(sender or '')}, "
           f"{_quote(text)}]")
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def key(store: Store, account: str, producer: str | None, phone: str, sender: str | None,
        text: str) -> str:
    """The duplicate-window key of one send: the one place it is built."""
    return store.keys.dup(account, fingerprint(producer, phone, sender, text))


def idempotency_key(producer: str | None, caller_key: str) -> str:
    """The caller's idempotency key scoped to its producer (``shop:order-7``): the same key
    from two producers binds two messages."""
    return f"{tenant(producer)}:{caller_key}"


def window_ms(account: Account) -> int:
    """How long the same content counts as a duplicate on ``account`` (0: never)."""
    return max(int(account.limits.duplicate_window_s * 1000), 0)


def claim(store: Store, account: Account, producer: str | None, phone: str,
          sender: str | None, text: str, *, scope: str | None = None) -> tuple[str, int] | None:
    """The duplicate claim of this content: (key, window ms) for ``core/lua/submit.lua``, which
    binds the key to the new message id unless a message the same producer sent with the same
    content holds it already (that id is the answer then); None when the account has no
    window. ``scope``: whose window (``Route.scope``); default the account's."""
    window = window_ms(account)
    if window <= 0:
        return None
    return key(store, scope or account.name, producer, phone, sender, text), window

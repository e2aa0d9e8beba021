"""Duplicates: the same producer, account, number, sender and text within
``Limits.duplicate_window_s`` (60 s by default; SMSC refuses an identical request within a
minute) is one message.

The producer claims a fingerprint key in Redis with SET NX and an expiry; a second send inside
the window gets the first message's id back and nothing new is queued.  An explicit
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


def fingerprint(producer: str | None, phone: str, sender: str | None, text: str) -> str:
    raw = json.dumps([tenant(producer), phone, sender or "", text], ensure_ascii=False)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def key(store: Store, account: str, producer: str | None, phone: str, sender: str | None,
        text: str) -> str:
    """The duplicate-window key of one send: the one place it is built."""
    return store.keys.dup(account, fingerprint(producer, phone, sender, text))


def idempotency_key(producer: str | None, caller_key: str) -> str:
    """The caller's idempotency key scoped to its producer (``shop:order-7``): the same key
    from two producers binds two messages."""
    return f"{tenant(producer)}:{caller_key}"


def claim(store: Store, account: Account, producer: str | None, phone: str,
          sender: str | None, text: str, msg_id: str, *, scope: str | None = None) -> str:
    """Bind this content to ``msg_id`` for the account's window unless a message the same
    producer sent with the same content holds it already; returns the id it is bound to
    (``msg_id`` when new). ``scope``: whose window (``Route.scope``); default the account's."""
    window_ms = int(account.limits.duplicate_window_s * 1000)
    if window_ms <= 0:
        return msg_id
    k = key(store, scope or account.name, producer, phone, sender, text)
    # the claim is a lock whose token is the message id (core.locks)
    if store.locks.take(k, msg_id, window_ms / 1000):
        return msg_id
    return store.locks.holder(k) or msg_id


def release(store: Store, account: str, producer: str | None, phone: str, sender: str | None,
            text: str, msg_id: str) -> None:
    """Undo a claim (the message could not be queued after all)."""
    # only if still ours
    store.locks.release(key(store, account, producer, phone, sender, text), msg_id)

"""Duplicates: the same account, number, sender and text within ``Limits.duplicate_window_s``
(60 s by default; SMSC refuses an identical request within a minute) is one message.

The producer claims a fingerprint key in Redis with SET NX and an expiry; a second send inside
the window gets the first message's id back and nothing new is queued.  An explicit
``idempotency_key`` (``producers/sms.py``) does the same for any window the caller picks.

Key layout: ``<ns>:dup:<account>:<sha256 of number, sender, text>`` -> first message id.
"""

from __future__ import annotations

import hashlib
import json

from core.settings import Account
from core.store import Store


def fingerprint(phone: str, sender: str | None, text: str) -> str:
    raw = json.dumps([phone, sender or "", text], ensure_ascii=False)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def key(store: Store, account: str, phone: str, sender: str | None, text: str) -> str:
    return store.keys.dup(account, fingerprint(phone, sender, text))


def claim(store: Store, account: Account, phone: str, sender: str | None, text: str,
          msg_id: str) -> str:
    """Bind this content to ``msg_id`` for the account's window unless a message with the same
    content holds it already; returns the id it is bound to (``msg_id`` when new)."""
    window_ms = int(account.limits.duplicate_window_s * 1000)
    if window_ms <= 0:
        return msg_id
    k = key(store, account.name, phone, sender, text)
    # the claim is a lock whose token is the message id (core.locks)
    if store.locks.take(k, msg_id, window_ms / 1000):
        return msg_id
    return store.locks.holder(k) or msg_id


def release(store: Store, account: str, phone: str, sender: str | None, text: str,
            msg_id: str) -> None:
    """Undo a claim (the message could not be queued after all)."""
    store.locks.release(key(store, account, phone, sender, text), msg_id)  # only if still ours

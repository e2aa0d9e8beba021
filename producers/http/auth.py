"""Producer tokens for the HTTP API: created and revoked with ``gonets token``, stored hashed.

A token looks like ``gnt_<id>_<secret>``.  Redis keeps only its SHA-256 (tokens are 256-bit
random strings, so an unsalted hash is as safe as a password hash and is one lookup):

    ns:token:<sha256 hex>    hash    id, producer, scopes ("send,read"), created_ms
    ns:tokens                hash    token id -> sha256 hex (list and revoke by id)
    ns:producer:<name>       hash    secret (signs outgoing callbacks), created_ms,
                                     allow_private_callbacks ("1": the operator lets its
                                     callbacks reach private addresses)

A *producer* is who owns messages: it sees only its own.  It may hold several tokens at once
(rotate one, then revoke the old); its callback signing secret outlives any one token.

Scopes: ``send`` (queue SMS), ``pay`` (payments), ``read`` (statuses and lists),
``consent`` (record and withdraw subscriber consent).

An API process remembers the tokens it verified (``Tokens(..., remember=True)``), so a call
costs no Redis round trip for its token.  A revocation reaches every API process at once:
``revoke`` publishes the token's digest on ``ns:tokens:revoked`` in the transaction that
deletes it, and the process reads that channel (without waiting) before it trusts anything it
remembers.  While that subscription is not confirmed (at start, after a Redis reconnect) it
remembers nothing; an entry is trusted for ``REMEMBER_S`` at most in any case.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

import redis

from core.errors import InvalidInput
from core.keys import Keys
from core.replies import maybe_text, text_dict
from core.store import now_ms

SCOPES = ("send", "pay", "read", "consent")
_PRODUCER = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_TOKEN = re.compile(r"^gnt_([0-9a-f]{12})_[A-Za-z0-9_-]{43}$")
#: the longest an API process trusts a token it verified without asking Redis again (a
#: revocation normally reaches it at once, see the module docstring)
REMEMBER_S = 30.0


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's id, its producer and its scopes."""

    token_id: str
    producer: str
    scopes: frozenset[str]


@dataclass(frozen=True)
class NewToken:
    token: str
    id: str
    producer: str
    scopes: tuple[str, ...]
    #: the producer's callback signing secret (HMAC-SHA256 key of ``X-Gonets-Signature``)
    callback_secret: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse_scopes(raw: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    scopes = tuple(dict.fromkeys(s.strip() for s in items if s.strip()))
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise InvalidInput("scopes", f"choose from {', '.join(SCOPES)} (got {bad or 'none'})")
    return scopes


class Verified:
    """The tokens one process verified lately, forgotten when ``ns:tokens:revoked`` names
    them.  Thread-safe: the event loop and the thread pool both ask."""

    def __init__(self, r: redis.Redis, channel: str, remember_s: float = REMEMBER_S) -> None:
        self.r = r
        self.channel = channel
        self.remember_s = remember_s
        self.lock = threading.Lock()
        self.entries: dict[str, tuple[float, Principal]] = {}
        #: bumped by every revocation and subscription change: a lookup that started before
        #: one may not store what it found
        self.generation = 0
        #: the subscription is confirmed: every revocation from then on reaches this process
        self.live = False
        self.ps: Any = None

    def get(self, digest: str) -> tuple[Principal | None, int]:
        """The remembered principal (None: ask Redis) and the generation to store under."""
        with self.lock:
            self._listen()
            hit = self.entries.get(digest) if self.live else None
            if hit is not None and hit[0] < time.monotonic():
                del self.entries[digest]
                hit = None
            return (hit[1] if hit else None), self.generation

    def put(self, digest: str, principal: Principal, generation: int) -> None:
        with self.lock:
            if self.live and generation == self.generation:
                self.entries[digest] = (time.monotonic() + self.remember_s, principal)

    def _listen(self) -> None:
        """Apply the revocations waiting on the channel, without waiting for more."""
        try:
            if self.ps is None:
                self.ps = self.r.pubsub()
                self.ps.subscribe(self.channel)  # confirmed by a later read
                # a reconnect (redis-py resubscribes on its own) may have lost revocations
                self.ps.connection.register_connect_callback(self._reconnected)
            while (msg := self.ps.get_message(timeout=0)) is not None:
                if msg["type"] == "message":
                    data = msg["data"]
                    self.entries.pop(data.decode() if isinstance(data, bytes) else data, None)
                elif msg["type"] == "subscribe":
                    self.live = True
                self.generation += 1
        except (redis.RedisError, OSError):
            self._reconnected()
            ps, self.ps = self.ps, None
            if ps is not None:
                try:
                    ps.close()
                except (redis.RedisError, OSError):
                    pass

    def _reconnected(self, *_: object) -> None:
        self.live = False
        self.entries.clear()
        self.generation += 1

    def close(self) -> None:
        with self.lock:
            if self.ps is not None:
                self.ps.close()
                self.ps = None
            self._reconnected()


class Tokens:
    def __init__(self, r: redis.Redis, namespace: str = "gonets", *,
                 remember: bool = False) -> None:
        """``remember``: keep verified tokens in this process (the API; see the module
        docstring)."""
        self.r = r
        self.ns = namespace
        self.keys = Keys(namespace)
        self.verified = Verified(r, self.keys.tokens_revoked()) if remember else None

    def create(self, producer: str, scopes: str | list[str] | tuple[str, ...]) -> NewToken:
        if not _PRODUCER.match(producer or ""):
            raise InvalidInput("producer", "1–64 of a-z 0-9 _ . - starting with a letter or digit")
        sc = parse_scopes(scopes)
        token_id = secrets.token_hex(6)
        token = f"gnt_{token_id}_{secrets.token_urlsafe(32)}"
        digest = _digest(token)
        pk = self.keys.producer(producer)
        # Tokens is the store of its own keys
        self.r.hsetnx(pk, "secret", secrets.token_urlsafe(32))
        self.r.hsetnx(pk, "created_ms", str(now_ms()))  # Tokens is the store of its own keys
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.keys.token(digest), mapping={
            "id": token_id, "producer": producer, "scopes": ",".join(sc),
            "created_ms": str(now_ms())})
        pipe.hset(self.keys.tokens(), token_id, digest)
        pipe.execute()
        return NewToken(token, token_id, producer, sc, self.callback_secret(producer) or "")

    def revoke(self, token_or_id: str) -> bool:
        """Revoke by token id or by the token itself; True if it existed."""
        m = _TOKEN.match(token_or_id)
        token_id = m.group(1) if m else token_or_id
        digest = maybe_text(self.r.hget(self.keys.tokens(), token_id))
        if digest is None:
            return False
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(self.keys.token(digest))
        pipe.hdel(self.keys.tokens(), token_id)
        pipe.publish(self.keys.tokens_revoked(), digest)  # every API process forgets it
        pipe.execute()
        return True

    def list(self) -> list[dict[str, str]]:
        out = []
        for _token_id, digest in sorted(text_dict(self.r.hgetall(self.keys.tokens())).items()):
            rec = text_dict(self.r.hgetall(self.keys.token(digest)))
            if rec:
                out.append(rec)
        return out

    def verify(self, token: str) -> Principal | None:
        """The principal of a valid token, else None (unknown, revoked or malformed)."""
        m = _TOKEN.match(token)
        if not m:
            return None
        digest = _digest(token)
        generation = 0
        if self.verified is not None:
            known, generation = self.verified.get(digest)
            if known is not None:
                return known
        rec = text_dict(self.r.hgetall(self.keys.token(digest)))
        # the hash is the lookup key already; compare ids anyway so a corrupt record never
        # authenticates a different token
        if not rec or not hmac.compare_digest(rec.get("id", ""), m.group(1)):
            return None
        principal = Principal(rec["id"], rec["producer"], frozenset(rec["scopes"].split(",")))
        if self.verified is not None:
            self.verified.put(digest, principal, generation)
        return principal

    def callback_secret(self, producer: str) -> str | None:
        return maybe_text(self.r.hget(self.keys.producer(producer), "secret"))

    def allows_private_callbacks(self, producer: str) -> bool:
        """Whether the operator let this producer's callbacks go to loopback, private and
        link-local addresses (producers/callback_targets.py)."""
        return maybe_text(self.r.hget(self.keys.producer(producer),
                                      "allow_private_callbacks")) == "1"

    def set_private_callbacks(self, producer: str, allow: bool) -> None:
        if not _PRODUCER.match(producer or ""):
            raise InvalidInput("producer", "1–64 of a-z 0-9 _ . - starting with a letter or "
                                           "digit")
        # Tokens is the store of its own keys
        self.r.hset(self.keys.producer(producer), "allow_private_callbacks",
                    "1" if allow else "0")

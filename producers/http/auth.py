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
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

import redis

from core.errors import InvalidInput
from core.keys import Keys
from core.replies import maybe_text, text_dict
from core.store import now_ms

SCOPES = ("send", "pay", "read", "consent")
_PRODUCER = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_TOKEN = re.compile(r"^gnt_([0-9a-f]{12})_[A-Za-z0-9_-]{43}$")


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


class Tokens:
    def __init__(self, r: redis.Redis, namespace: str = "gonets") -> None:
        self.r = r
        self.ns = namespace
        self.keys = Keys(namespace)

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
        rec = text_dict(self.r.hgetall(self.keys.token(digest)))
        # the hash is the lookup key already; compare ids anyway so a corrupt record never
        # authenticates a different token
        if not rec or not hmac.compare_digest(rec.get("id", ""), m.group(1)):
            return None
        return Principal(rec["id"], rec["producer"], frozenset(rec["scopes"].split(",")))

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

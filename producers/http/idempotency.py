"""The ``Idempotency-Key`` header: the same key and body give the same answer; the same key
with a different body gives 409.

    ns:http-idem:<producer>:<sha256(key)>   string  JSON {fp, status?, body?}; 24 h

The first request claims the key (``SET NX``) with the body's fingerprint, runs, then stores
its answer.  A repeat with the same fingerprint gets the stored answer (and
``Idempotent-Replayed: true``); a repeat while the first is still running waits for it a few
seconds, then gets 409.  A 5xx answer is not kept: the key is freed so the call can be retried.
Keys are per producer: two producers never see each other's answers.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

import redis

from core.keys import Keys
from producers.http.problem import ApiError

TTL_S = 24 * 3600
#: headers of the first answer a replay repeats (where the created resource is)
REPLAYED_HEADERS = ("location",)
WAIT_S = 5.0


@dataclass(frozen=True)
class Stored:
    status: int
    body: str
    media_type: str
    #: headers the first answer had that say where its result is (Location), given again
    headers: dict[str, str] | None = None


def fingerprint(method: str, path: str, body: bytes) -> str:
    """Of the method, path and body; JSON bodies are compared by content, not whitespace."""
    try:
        canon = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, UnicodeDecodeError, RecursionError):
        canon = body
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + canon).hexdigest()


def check_key(key: str) -> str:
    if not (1 <= len(key) <= 200) or not key.isprintable():
        raise ApiError(400, "Idempotency-Key must be 1–200 printable characters",
                       field="Idempotency-Key")
    return key


class Idempotency:
    def __init__(self, r: redis.Redis, namespace: str) -> None:
        self.r = r
        self.ns = namespace
        self.keys = Keys(namespace)

    def _k(self, producer: str, key: str) -> str:
        return self.keys.http_idem(producer, hashlib.sha256(key.encode()).hexdigest())

    def begin(self, producer: str, key: str, fp: str) -> Stored | None:
        """Claim the key (None: go ahead) or return the stored answer. Raises 409."""
        k = self._k(producer, key)
        deadline = time.monotonic() + WAIT_S
        while True:
            # this class's own key (http-idem)
            if self.r.set(k, json.dumps({"fp": fp}), nx=True, ex=TTL_S):
                return None
            raw = self.r.get(k)  # this class's own key (http-idem)
            if raw is None:
                continue  # expired or freed between the two calls
            rec: dict[str, Any] = json.loads(raw)
            if rec.get("fp") != fp:
                raise ApiError(409, "this Idempotency-Key was used with a different request "
                               "body", field="Idempotency-Key")
            if "status" in rec:
                return Stored(rec["status"], rec["body"], rec["media_type"],
                              rec.get("headers") or None)
            if time.monotonic() > deadline:
                raise ApiError(409, "a request with this Idempotency-Key is still in progress",
                               field="Idempotency-Key")
            time.sleep(0.05)

    def finish(self, producer: str, key: str, fp: str, status: int, body: str,
               media_type: str, headers: dict[str, str] | None = None) -> None:
        k = self._k(producer, key)
        if status >= 500:
            self.r.delete(k)  # this class's own key (http-idem)
            return
        kept = {h: v for h, v in (headers or {}).items() if h.lower() in REPLAYED_HEADERS}
        # this class's own key (http-idem)
        self.r.set(k, json.dumps({"fp": fp, "status": status, "body": body,
                                  "media_type": media_type, "headers": kept}), ex=TTL_S)

    def abandon(self, producer: str, key: str) -> None:
        self.r.delete(self._k(producer, key))  # this class's own key (http-idem)

"""The Gonets store: message records, their status history and the event stream, in Redis.

Key layout (``ns`` is ``Settings.namespace``):

    ns:msg:<id>            hash    the record; every value a string
    ns:msg:<id>:history    list    JSON events of this record, oldest first
    ns:events              stream  every status change (id, status, event JSON); capped
    ns:nonfinal            zset    id -> next status check time (ms), non-final records only
    ns:idem:<acct>:<key>   string  idempotency key -> message id
    ns:seq:<acct>          string  counter for provider-side numeric ids
    ns:pid:<acct>:<pid>    string  provider's message id -> message id (receipts, webhooks)
    ns:stats               hash    "<acct>|<status>|<error code>" -> status changes so far
                                   (cluster-wide counters the scheduler's /metrics exports)

Status changes go through one Lua script (``lua/transition.lua``): a final status never
changes, a status never moves back (a late ``submitted`` cannot undo ``delivered``), and every
change appends the event to the history and the stream in the same step.  Final records expire
after ``retention_s``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any, Iterable, Mapping

import redis

from core.contracts import Status
from core.errors import UnknownMessage
from core.settings import Settings


def now_ms() -> int:
    return int(time.time() * 1000)


def _lua(name: str) -> str:
    return resources.files("core").joinpath("lua", name).read_text(encoding="utf-8")


def redis_client(url: str) -> redis.Redis:
    """A decoded-string client with timeouts and retries on connection blips."""
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=30,
        socket_connect_timeout=5,
        health_check_interval=30,
        retry_on_timeout=True,
    )


@dataclass(frozen=True)
class Transition:
    changed: bool
    status: Status


class Store:
    def __init__(self, client: redis.Redis, *, namespace: str = "gonets",
                 retention_s: int = 30 * 24 * 3600, events_maxlen: int = 1_000_000) -> None:
        self.r = client
        self.ns = namespace
        self.retention_s = retention_s
        self.events_maxlen = events_maxlen
        self._transition = client.register_script(_lua("transition.lua"))
        self._create = client.register_script(_lua("create.lua"))
        self._resubmit = client.register_script(_lua("resubmit.lua"))

    @classmethod
    def from_settings(cls, settings: Settings) -> "Store":
        return cls(redis_client(settings.redis_url), namespace=settings.namespace,
                   retention_s=settings.retention_s, events_maxlen=settings.events_maxlen)

    # --- keys
    def key(self, *parts: str) -> str:
        return ":".join((self.ns, *parts))

    def msg_key(self, msg_id: str) -> str:
        return self.key("msg", msg_id)

    @property
    def events_key(self) -> str:
        return self.key("events")

    @property
    def nonfinal_key(self) -> str:
        return self.key("nonfinal")

    @property
    def stats_key(self) -> str:
        return self.key("stats")

    def _keys(self, msg_id: str) -> list[str]:
        return [self.msg_key(msg_id), self.msg_key(msg_id) + ":history", self.events_key,
                self.nonfinal_key, self.stats_key]

    # --- records
    def create(self, msg_id: str, fields: Mapping[str, Any], *, next_check_ms: int,
               status: Status = Status.QUEUED, reason: str = "") -> bool:
        ts = now_ms()
        record = {k: _s(v) for k, v in fields.items() if v is not None}
        record.update(id=msg_id, status=status.value, status_rank=str(status.rank),
                      created_ms=str(ts), updated_ms=str(ts), attempts=record.get("attempts", "0"))
        event = json.dumps({"id": msg_id, "status": status.value, "at_ms": ts, "reason": reason})
        flat: list[str] = []
        for k, v in record.items():
            flat += [k, v]
        return bool(self._create(keys=self._keys(msg_id),
                                 args=[msg_id, next_check_ms, self.events_maxlen, event,
                                       status.value, *flat]))

    def delete(self, msg_id: str) -> None:
        keys = self._keys(msg_id)
        self.r.delete(keys[0], keys[1])
        self.r.zrem(self.nonfinal_key, msg_id)

    def get(self, msg_id: str) -> dict[str, str]:
        rec = self.r.hgetall(self.msg_key(msg_id))
        if not rec:
            raise UnknownMessage(msg_id)
        return rec

    def find(self, msg_id: str) -> dict[str, str] | None:
        return self.r.hgetall(self.msg_key(msg_id)) or None

    def history(self, msg_id: str) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.r.lrange(self.msg_key(msg_id) + ":history", 0, -1)]

    def update(self, msg_id: str, **fields: Any) -> None:
        """Set fields without changing the status (only on an existing record)."""
        values = {k: _s(v) for k, v in fields.items() if v is not None}
        if values:
            pipe = self.r.pipeline()
            pipe.exists(self.msg_key(msg_id))
            pipe.hset(self.msg_key(msg_id), mapping=values)
            exists, _ = pipe.execute()
            if not exists:  # do not resurrect an expired record as a fragment
                self.r.delete(self.msg_key(msg_id))
                raise UnknownMessage(msg_id)

    def incr(self, msg_id: str, field: str, by: int = 1) -> int:
        return int(self.r.hincrby(self.msg_key(msg_id), field, by))

    def transition(self, msg_id: str, status: Status | str, *, reason: str = "",
                   provider_status: str | None = None, error_code: str | None = None,
                   **fields: Any) -> Transition:
        """Move a record to ``status``; refused if it is final or the move goes backwards."""
        status = Status(status)
        ts = now_ms()
        extra = {k: _s(v) for k, v in fields.items() if v is not None}
        if provider_status is not None:
            extra["provider_status"] = provider_status
        if error_code is not None:
            extra["error_code"] = error_code
        if reason:
            extra["reason"] = reason
        event: dict[str, Any] = {"id": msg_id, "status": status.value, "at_ms": ts}
        if reason:
            event["reason"] = reason
        if provider_status is not None:
            event["provider_status"] = provider_status
        if error_code is not None:
            event["error_code"] = error_code
        flat: list[str] = []
        for k, v in extra.items():
            flat += [k, v]
        res = int(self._transition(
            keys=self._keys(msg_id),
            args=[status.value, status.rank, "1" if status.final else "0", ts, self.retention_s,
                  self.events_maxlen, msg_id, json.dumps(event), *flat]))
        if res == -1:
            raise UnknownMessage(msg_id)
        if res in (1, 2):
            return Transition(changed=res == 1, status=status)
        current = self.r.hget(self.msg_key(msg_id), "status") or status.value
        return Transition(changed=False, status=Status(current))

    def resubmit(self, msg_id: str, receipt_id: str, *, reason: str, error_code: str,
                 status: Status = Status.QUEUED, max_resubmits: int = 3,
                 next_check_ms: int | None = None) -> int:
        """Take a ``submitted`` message back for another send after a retryable receipt.
        Returns 1 (do send it again), 2 (this receipt was handled already) or 0 (not
        possible: apply the receipt's final status instead)."""
        ts = now_ms()
        event = json.dumps({"id": msg_id, "status": status.value, "at_ms": ts,
                            "reason": reason, "error_code": error_code, "resubmit": True})
        return int(self._resubmit(
            keys=self._keys(msg_id),
            args=[ts, self.events_maxlen, msg_id, event, receipt_id, max_resubmits,
                  status.value, next_check_ms or ts + 600_000,
                  "reason", reason, "error_code", error_code]))

    def begin_attempt(self, msg_id: str, *, seq: str | None = None) -> None:
        """Mark a send attempt as in flight (one round trip): until it is settled, a retry
        must look the message up at the provider before sending it again."""
        key = self.msg_key(msg_id)
        pipe = self.r.pipeline(transaction=False)
        if seq is not None:
            pipe.hset(key, "seq", seq)
        pipe.hset(key, "inflight_ms", str(now_ms()))
        pipe.hincrby(key, "attempts", 1)
        pipe.execute()

    def set_poll(self, msg_id: str, token: str, at_ms: int) -> None:
        """Record the current poll chain's token and when the status is next asked for."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hset(self.msg_key(msg_id), "poll_token", token)
        pipe.zadd(self.nonfinal_key, {msg_id: at_ms}, xx=True)
        pipe.execute()

    def schedule_check(self, msg_id: str, at_ms: int) -> None:
        """Set when the status of a non-final record should next be asked for."""
        self.r.zadd(self.nonfinal_key, {msg_id: at_ms}, xx=True)

    # --- ids and idempotency
    def bind_provider_id(self, account: str, provider_id: str, msg_id: str) -> None:
        """Remember which message a provider id belongs to (for receipts and webhooks)."""
        self.r.set(self.key("pid", account, provider_id), msg_id, ex=self.retention_s)

    def by_provider_id(self, account: str, provider_id: str) -> str | None:
        return self.r.get(self.key("pid", account, provider_id))

    def next_seq(self, account: str) -> int:
        """A numeric id unique per account, 1..2**31-1 (SMSC accepts client ids in this range)."""
        n = int(self.r.incr(self.key("seq", account)))
        return (n - 1) % (2**31 - 1) + 1

    def claim_idempotency(self, account: str, key: str, msg_id: str, ttl_s: int) -> str:
        """Bind ``key`` to ``msg_id`` unless it is bound already; returns the bound id."""
        k = self.key("idem", account, key)
        if self.r.set(k, msg_id, nx=True, ex=ttl_s):
            return msg_id
        existing = self.r.get(k)
        return existing or msg_id

    def release_idempotency(self, account: str, key: str, msg_id: str) -> None:
        k = self.key("idem", account, key)
        if self.r.get(k) == msg_id:
            self.r.delete(k)

    # --- events
    def events(self, start: str = "-", count: int | None = None) -> list[tuple[str, dict[str, str]]]:
        return self.r.xrange(self.events_key, min=start, count=count)

    def events_for(self, ids: Iterable[str]) -> dict[str, list[str]]:
        wanted = set(ids)
        out: dict[str, list[str]] = {i: [] for i in wanted}
        last = "-"
        while True:
            batch = self.r.xrange(self.events_key, min=last, count=10_000)
            if last != "-" and batch and batch[0][0] == last:
                batch = batch[1:]
            if not batch:
                break
            for _, ev in batch:
                if ev["id"] in wanted:
                    out[ev["id"]].append(ev["status"])
            last = batch[-1][0]
        return out


def _s(v: Any) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False)
    return str(v)

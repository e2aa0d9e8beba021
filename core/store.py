"""The Gonets store: records, their status history and the event stream, in Redis.

One ``RecordStore`` serves every kind of record, parameterised by a ``RecordModel`` (its status
model with the rank table, and its keys as ``core.keys`` names them: record, history, event
stream, index): ``Store`` holds messages
(``MESSAGES``, below); ``core.payment_store`` holds payments and MTS Money checks on the same
scripts.

Key layout of messages (``ns`` is ``Settings.namespace``; every key of Gonets: ``core/keys.py``):

    ns:msg:<id>            hash    the record; every value a string
    ns:msg:<id>:history    list    JSON events of this record, oldest first
    ns:events              stream  every status change (id, status, event JSON); capped
    ns:nonfinal            zset    id -> next status check time (ms), non-final records only
    ns:idem:<acct>:<key>   string  idempotency key -> message id
    ns:seq:<acct>          string  counter for provider-side numeric ids
    ns:pid:<acct>:<pid>    string  provider's message id -> message id (receipts, webhooks)
    ns:stats               hash    "<acct>|<status>|<error code>" -> status changes so far
                                   (cluster-wide counters the scheduler's /metrics exports)

Status changes of every kind go through one Lua script (``lua/transition.lua``): a final
status never changes, a status never moves back (a late ``submitted`` cannot undo
``delivered``), and every change appends the event to the history and the stream in the same
step.  Final records expire after ``retention_s``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from typing import Any, Generic, TypeVar

import orjson
import redis

from core.contracts import RANK, Status
from core.errors import UnknownMessage
from core.keys import Keys
from core.locks import locks_for
from core.redis_conn import connect
from core.replies import HashFields, maybe_text, stream_entries, text, text_dict, text_list
from core.settings import Settings
from core.timing import now_ms as now_ms  # re-exported: the store's clock is the timing rules'


def lua_text(name: str) -> str:
    """The text of ``core/lua/<name>``."""
    return resources.files("core").joinpath("lua", name).read_text(encoding="utf-8")


_lua = lua_text


def composed_script(client: redis.Redis, name: str, main: str, **parts: str) -> Any:
    """Register the script ``main`` (the text of the file ``name``) preceded by each of
    ``parts`` (function name -> another script's text, which reads ``KEYS`` and ``ARGV``) as a
    local Lua function ``fn(KEYS, ARGV)``: ``main`` runs those very scripts within its own
    step. Its trace spans carry ``name`` (``core.observability.tracing.script_name``)."""
    text = "".join(f"local function {fn}(KEYS, ARGV)\n{source}\nend\n"
                   for fn, source in parts.items())
    script = client.register_script(text + main)
    script._gonets_name = name  # type: ignore[attr-defined]
    return script


def redis_client(url: str) -> redis.Redis:
    """A decoded-string client with timeouts and retries on connection blips, for either form
    of ``GONETS_REDIS_URL`` (one Redis, or a Sentinel-managed master): ``core.redis_conn``."""
    return connect(url)


#: the rank of every final status: the transition script refuses any change of a record whose
#: rank is this (see ``lua/transition.lua``); a model ranks its other statuses below it
FINAL_RANK = 2

S = TypeVar("S", bound=StrEnum)
T = TypeVar("T", bound=StrEnum)


@dataclass(frozen=True)
class RecordModel(Generic[S]):
    """What one kind of record is: its status model and where its keys live.

    ``ranks`` is the status rank table: a status change never goes to a lower rank, and a
    status of rank ``FINAL_RANK`` is final (the record expires after the retention period).
    Keys are ``core.keys.Keys`` methods (the one place that spells them).
    """

    #: what the records are, for errors
    name: str
    statuses: type[S]
    ranks: Mapping[S, int]
    #: the record hash and its history list (JSON status events, oldest first)
    record: Callable[[Keys, str], str]
    history: Callable[[Keys, str], str]
    #: the stream every status change of this kind is appended to
    events: Callable[[Keys], str]
    #: the sorted set of non-final records (id -> when to look at it next, ms): one for the
    #: kind (``index``), or one per account (``account_index``: the record's ``account``)
    index: Callable[[Keys], str] | None = None
    account_index: Callable[[Keys, str], str] | None = None
    #: written into every record and event of this kind (``None``: not written)
    kind: str | None = None
    #: count status changes per account, status and error code in ``ns:stats`` (metrics)
    stats: bool = False
    #: fields of a transition that are copied into its event (when given)
    event_fields: tuple[str, ...] = ("provider_status", "error_code")

    def __post_init__(self) -> None:
        missing = [s for s in self.statuses if s not in self.ranks]
        if missing or any(not 0 <= r <= FINAL_RANK for r in self.ranks.values()):
            raise ValueError(f"{self.name}: every status needs a rank 0..{FINAL_RANK}")
        if (self.index is None) == (self.account_index is None):
            raise ValueError(f"{self.name}: give one index, for the kind or per account")

    def rank(self, status: S) -> int:
        return self.ranks[status]

    def final(self, status: S) -> bool:
        return self.ranks[status] == FINAL_RANK


#: SMS message records (core/contracts.py holds their status model)
MESSAGES: RecordModel[Status] = RecordModel(
    name="message", statuses=Status, ranks=RANK, record=Keys.msg, history=Keys.msg_history,
    events=Keys.events, index=Keys.nonfinal, stats=True,
    event_fields=("provider_status", "error_code", "account"))


@dataclass(frozen=True)
class Transition(Generic[S]):
    changed: bool
    status: S


#: called with (record id, status, error code) whenever ``transition`` wrote a record (a
#: worker's tracing notes where its job left the record: ``core.observability.tracing``)
_on_transition: Callable[[str, str, str | None], None] | None = None


def set_transition_listener(fn: Callable[[str, str, str | None], None] | None) -> None:
    global _on_transition
    _on_transition = fn


class RecordStore(Generic[S]):
    """Records of one ``RecordModel`` in Redis: create, read, move through the status model.

    Every record kind (messages, payments, service checks) goes through the same Lua scripts,
    so "a final status never changes, a status never moves back, every change is an event"
    is written once."""

    def __init__(self, client: redis.Redis, model: RecordModel[S], *, namespace: str = "gonets",
                 retention_s: int = 30 * 24 * 3600, events_maxlen: int = 1_000_000) -> None:
        self.r = client
        self.model = model
        self.ns = namespace
        #: every key's name (core/keys.py) and the owner-checked locks (core/locks.py)
        self.keys = Keys(namespace)
        self.locks = locks_for(client)
        self.retention_s = retention_s
        self.events_maxlen = events_maxlen
        self._transition = client.register_script(_lua("transition.lua"))
        self._create = client.register_script(_lua("create.lua"))

    def ping(self) -> bool:
        """True when Redis answers (health checks)."""
        return bool(self.r.ping())

    def close(self) -> None:
        self.r.close()

    def records(self, model: RecordModel[T]) -> RecordStore[T]:
        """A store of another record kind on the same Redis, namespace and retention."""
        return RecordStore(self.r, model, namespace=self.ns, retention_s=self.retention_s,
                           events_maxlen=self.events_maxlen)

    # --- keys
    def key(self, *parts: str) -> str:
        return self.keys.key(*parts)

    def record_key(self, rec_id: str) -> str:
        return self.model.record(self.keys, rec_id)

    def history_key(self, rec_id: str) -> str:
        return self.model.history(self.keys, rec_id)

    @property
    def events_key(self) -> str:
        return self.model.events(self.keys)

    @property
    def stats_key(self) -> str:
        return self.keys.stats()

    def index_key(self, account: str | None = None) -> str:
        """The model's index of non-final records (per account when the model says so)."""
        if self.model.index is not None:
            return self.model.index(self.keys)
        if account is None or self.model.account_index is None:
            raise ValueError(f"the {self.model.name} index is per account: name one")
        return self.model.account_index(self.keys, account)

    def _index_key_of(self, rec_id: str, account: str | None) -> str:
        if account is None and self.model.account_index is not None:
            account = maybe_text(self.r.hget(self.record_key(rec_id), "account"))
            if account is None:
                raise UnknownMessage(rec_id)
        return self.index_key(account)

    def _keys(self, rec_id: str, index_key: str) -> list[str]:
        k = self.record_key(rec_id)
        keys = [k, self.history_key(rec_id), self.events_key, index_key]
        return [*keys, self.stats_key] if self.model.stats else keys

    # --- records
    def create(self, rec_id: str, fields: Mapping[str, Any], *, next_check_ms: int,
               status: S | None = None, reason: str | None = "") -> bool:
        """Write a new record (never over an existing one) with its first event; it is due in
        the model's index at ``next_check_ms``. Returns False when the id exists already."""
        keys, args = self._create_call(rec_id, fields, next_check_ms=next_check_ms,
                                       status=status, reason=reason)
        return bool(self._create(keys=keys, args=args))

    def _create_call(self, rec_id: str, fields: Mapping[str, Any], *, next_check_ms: int,
                     status: S | None = None,
                     reason: str | None = "") -> tuple[list[str], list[Any]]:
        """The keys and arguments of ``lua/create.lua`` for a new record."""
        keys, args, record = self._new_record(rec_id, fields, next_check_ms=next_check_ms,
                                              status=status, reason=reason)
        return keys, [*args, *_flat(record)]

    def _new_record(self, rec_id: str, fields: Mapping[str, Any], *, next_check_ms: int,
                    status: S | None = None, reason: str | None = ""
                    ) -> tuple[list[str], list[Any], dict[str, str]]:
        """A new record's keys, the first five arguments of ``lua/create.lua`` and
        ``lua/submit.lua`` (id, next check, stream cap, first event, status) and its fields."""
        st = self.model.statuses(status) if status is not None else next(iter(self.model.statuses))
        ts = now_ms()
        record = {k: _s(v) for k, v in fields.items() if v is not None}
        kind = {"kind": self.model.kind} if self.model.kind else {}
        record.update(id=rec_id, **kind, status=st.value, status_rank=str(self.model.rank(st)),
                      created_ms=str(ts), updated_ms=str(ts),
                      attempts=record.get("attempts", "0"))
        event: dict[str, Any] = {"id": rec_id, **kind, "status": st.value, "at_ms": ts}
        if reason is not None:
            event["reason"] = reason
        per_account = self.model.account_index is not None
        keys = self._keys(rec_id, self.index_key(record.get("account") if per_account else None))
        args = [rec_id, next_check_ms, self.events_maxlen, json.dumps(event), st.value]
        return keys, args, record

    def delete(self, rec_id: str, account: str | None = None) -> None:
        index = self._index_key_of(rec_id, account)
        self.r.delete(self.record_key(rec_id), self.history_key(rec_id))
        self.r.zrem(index, rec_id)

    def get(self, rec_id: str) -> dict[str, str]:
        rec = text_dict(self.r.hgetall(self.record_key(rec_id)))
        if not rec:
            raise UnknownMessage(rec_id)
        return rec

    def find(self, rec_id: str) -> dict[str, str] | None:
        return text_dict(self.r.hgetall(self.record_key(rec_id))) or None

    def find_many(self, rec_ids: list[str]) -> list[dict[str, str] | None]:
        """``find`` of each id, in one pipelined round trip."""
        pipe = self.r.pipeline(transaction=False)
        for rec_id in rec_ids:
            pipe.hgetall(self.record_key(rec_id))
        return [text_dict(raw) or None for raw in pipe.execute()]

    def history(self, rec_id: str) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.r.lrange(self.history_key(rec_id), 0, -1)]

    def update(self, rec_id: str, **fields: Any) -> None:
        """Set fields without changing the status (only on an existing record)."""
        values: HashFields = {k: _s(v) for k, v in fields.items() if v is not None}
        if values:
            pipe = self.r.pipeline()
            pipe.exists(self.record_key(rec_id))
            pipe.hset(self.record_key(rec_id), mapping=values)
            exists, _ = pipe.execute()
            if not exists:  # do not resurrect an expired record as a fragment
                self.r.delete(self.record_key(rec_id))
                raise UnknownMessage(rec_id)

    def incr(self, rec_id: str, field: str, by: int = 1) -> int:
        return int(self.r.hincrby(self.record_key(rec_id), field, by))

    def transition(self, rec_id: str, status: S | str, *, reason: str = "",
                   account: str | None = None, **fields: Any) -> Transition[S]:
        """Move a record to ``status``, setting ``fields`` with it; refused if the record is
        final or the move goes backwards. ``account`` spares a read for a per-account index."""
        st, keys, args, extra = self._transition_call(rec_id, status, reason=reason,
                                                      account=account, fields=fields)
        res = int(self._transition(keys=keys, args=args))
        if res in (1, 2):
            return self._transitioned(rec_id, st, res, extra)
        if res == -1:
            raise UnknownMessage(rec_id)
        current = self.r.hget(keys[0], "status") or st.value
        return Transition(changed=False, status=self.model.statuses(text(current)))

    def _transition_call(self, rec_id: str, status: S | str, *, reason: str,
                         account: str | None, fields: Mapping[str, Any]
                         ) -> tuple[S, list[str], list[Any], dict[str, str]]:
        """The status, keys and arguments of ``lua/transition.lua``, and the fields it sets."""
        st = self.model.statuses(status)
        ts = now_ms()
        extra = {k: _s(v) for k, v in fields.items() if v is not None}
        if reason:
            extra["reason"] = reason
        event: dict[str, Any] = {"id": rec_id, "status": st.value, "at_ms": ts}
        if self.model.kind:
            event["kind"] = self.model.kind
        if reason:
            event["reason"] = reason
        for k in self.model.event_fields:
            if k in extra:
                event[k] = extra[k]
        if account is not None and "account" in self.model.event_fields:
            event["account"] = account  # the account it happened on (a route may move it)
        keys = self._keys(rec_id, self._index_key_of(rec_id, account))
        args = [st.value, self.model.rank(st), "1" if self.model.final(st) else "0", ts,
                self.retention_s, self.events_maxlen, rec_id, json.dumps(event), *_flat(extra)]
        return st, keys, args, extra

    @staticmethod
    def _transitioned(rec_id: str, st: S, res: int, extra: Mapping[str, str]) -> Transition[S]:
        """What ``transition.lua`` answered 1 (changed) or 2 (same status) means."""
        if _on_transition is not None:
            _on_transition(rec_id, st.value, extra.get("error_code") or None)
        return Transition(changed=res == 1, status=st)

    def schedule(self, rec_id: str, at_ms: int, account: str | None = None) -> None:
        """When a non-final record is next due in the index (no-op once it left it)."""
        self.r.zadd(self._index_key_of(rec_id, account), {rec_id: at_ms}, xx=True)

    def due(self, account: str | None = None, *, now: int | None = None,
            limit: int = 100) -> list[str]:
        """Ids due in the index by ``now`` (default: now), oldest first."""
        return text_list(self.r.zrangebyscore(self.index_key(account), 0, now or now_ms(), start=0,
                                              num=limit))


#: slots, not frozen: one per message on the send path (as ``producers.sms.Draft``)
@dataclass(slots=True)
class Submission:
    """One message for ``Store.submit_many``: its record, its dramatiq job (``core.broker.prepare``)
    and the keys it claims.  ``idempotency`` is (key, ttl s), ``duplicate`` (key, window ms),
    ``index`` (the producer's index key, score ms, trim below this score or None)."""

    msg_id: str
    fields: Mapping[str, Any]
    next_check_ms: int
    queue_key: str
    messages_key: str
    job_id: str
    job_data: bytes
    #: the doorbell channel and queue name PUBLISHed with the job (core/doorbell.py)
    doorbell: str
    queue_name: str
    idempotency: tuple[str, int] | None = None
    duplicate: tuple[str, int] | None = None
    index: tuple[str, int, int | None] | None = None


@dataclass
class Attempt:
    """One call of ``lua/attempt.lua`` (``Store.begin_attempt``): its keys and arguments, and
    once a script ran it, ``begun`` and the seq it stored."""

    keys: list[str]
    args: list[Any]
    begun: bool = False
    seq: str | None = None

    def done(self, answer: Any) -> str | None:
        """The script ran it and answered ``answer``; returns the seq stored, if any."""
        self.begun = True
        self.seq = maybe_text(answer) or None
        return self.seq


@dataclass(frozen=True)
class QueuedJob:
    """A dramatiq job for a script to write as dispatch.lua "enqueue" does (HSET ``data``
    under ``redis_id`` in ``messages_key``, RPUSH ``redis_id`` onto ``queue_key``), then
    PUBLISH ``queue_name`` on ``doorbell`` ("": no ring; ``core/doorbell.py``)."""

    queue_key: str
    messages_key: str
    redis_id: str
    data: bytes
    doorbell: str
    queue_name: str


class Store(RecordStore[Status]):
    """The Gonets store: message records (``MESSAGES``) and what belongs to messages only:
    resubmissions, send attempts, poll chains, provider ids, idempotency keys."""

    def __init__(self, client: redis.Redis, *, namespace: str = "gonets",
                 retention_s: int = 30 * 24 * 3600, events_maxlen: int = 1_000_000) -> None:
        super().__init__(client, MESSAGES, namespace=namespace, retention_s=retention_s,
                         events_maxlen=events_maxlen)
        self._resubmit = client.register_script(_lua("resubmit.lua"))
        self._submit = client.register_script(_lua("submit.lua"))
        self._move = client.register_script(_lua("move.lua"))
        #: ``SubmitCall``'s: ((namespace, stream cap), shared keys, new status, its rank)
        self._submit_head: tuple[tuple[str, int], tuple[str, str, str], str, str] | None = None
        self._attempt = client.register_script(_lua("attempt.lua"))
        self._mark_submitted = composed_script(client, "submitted.lua", _lua("submitted.lua"),
                                               transition=_lua("transition.lua"))

    @classmethod
    def from_settings(cls, settings: Settings) -> Store:
        return cls(redis_client(settings.redis_url), namespace=settings.namespace,
                   retention_s=settings.retention_s, events_maxlen=settings.events_maxlen)

    def msg_key(self, msg_id: str) -> str:
        return self.record_key(msg_id)

    def submit_many(self, subs: Sequence[Submission], *,
                    client: redis.Redis | None = None) -> Any:
        """Accept messages (``lua/submit.lua``), in order, in one script call (one round
        trip): each message's idempotency key and duplicate claim, its record, its send job
        and its producer's index entry, all or nothing, and a message finds the claims of
        those before it.  Returns the outcomes as one flat list, two items per message
        (``Store.submitted_many`` reads each as ``(outcome, id)``: ``new`` (this id), ``idem``
        (the id the key is bound to), ``dup`` (the first id of the same content) or
        ``exists``).  With a pipeline as ``client`` the call is queued on it and its reply
        comes from ``execute()``."""
        call = SubmitCall(self, subs[0].doorbell if subs else "")
        for sub in subs:
            call.add(sub)
        return call.run(client)

    def _call_submit(self, keys: list[str], args: list[Any], client: redis.Redis | None) -> Any:
        """EVALSHA of ``lua/submit.lua`` (loaded first when Redis does not know it): redis-py's
        ``Script`` call checks and copies every argument again, a fifth of a send's cost."""
        if client is not None:
            return self._submit(keys=keys, args=args, client=client)
        try:
            return self.r.execute_command("EVALSHA", self._submit.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            return self._submit(keys=keys, args=args)

    @staticmethod
    def submitted_many(reply: Any) -> list[tuple[str, str]]:
        """``(outcome, id)`` of each message of a ``submit_many`` reply, in order."""
        items = text_list(reply)
        return list(zip(items[::2], items[1::2], strict=True))

    @property
    def nonfinal_key(self) -> str:
        return self.index_key()

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
            keys=self._keys(msg_id, self.nonfinal_key),
            args=[ts, self.events_maxlen, msg_id, event, receipt_id, max_resubmits,
                  status.value, next_check_ms or ts + 600_000,
                  "reason", reason, "error_code", error_code]))

    def move(self, msg_id: str, from_account: str, to_account: str, to_provider: str, *,
             reason: str, detail: str, max_moves: int, to_sender: str | None = None) -> bool:
        """Move a message waiting on ``from_account`` (nothing in flight) to ``to_account`` of
        its route (``lua/move.lua``): ``account`` and ``provider`` change (and ``sender`` to
        ``to_sender``, the new account's default, when the caller named none), ``tried``
        gains ``{account, reason, detail, at_ms}`` and its history the move. False: refused."""
        ts = now_ms()
        event = {"id": msg_id, "status": Status.QUEUED.value, "at_ms": ts, "account": to_account,
                 "moved_from": from_account,
                 "reason": f"moved from {from_account} to {to_account}: {detail} ({reason})"}
        tried = {"account": from_account, "reason": reason, "detail": detail, "at_ms": ts}
        return bool(self._move(keys=[self.msg_key(msg_id), self.history_key(msg_id)],
                               args=[from_account, to_account, to_provider, ts,
                                     json.dumps(event, ensure_ascii=False),
                                     json.dumps(tried, ensure_ascii=False), max_moves,
                                     to_sender or ""]))

    def begin_attempt(self, msg_id: str, *, seq: str | None = None,
                      new_seq: str | None = None) -> str | None:
        """Mark a send attempt as in flight (one round trip, ``lua/attempt.lua``): until it is
        settled, a retry must look the message up at the provider before sending it again.
        ``seq`` is stored with it; ``new_seq`` (an account) stores that account's next
        ``next_seq`` instead, taken in the same step. Returns the seq stored, if any. (A send
        begins its attempt in its pacing booking's step instead: ``attempt``.)"""
        a = self.attempt(msg_id, seq=seq, new_seq=new_seq)
        return a.done(self._attempt(keys=a.keys, args=a.args))

    def attempt(self, msg_id: str, *, seq: str | None = None,
                new_seq: str | None = None) -> Attempt:
        """``begin_attempt``'s call of ``lua/attempt.lua``, for another script to make."""
        keys = [self.msg_key(msg_id)]
        if new_seq is not None:
            keys.append(self.keys.seq(new_seq))
        return Attempt(keys, [now_ms(), seq or ""])

    def set_poll(self, msg_id: str, token: str, at_ms: int) -> None:
        """Record the current poll chain's token and when the status is next asked for."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hset(self.msg_key(msg_id), "poll_token", token)
        pipe.zadd(self.nonfinal_key, {msg_id: at_ms}, xx=True)
        pipe.execute()

    def mark_submitted(self, msg_id: str, *, account: str, provider_id: str,
                       fields: Mapping[str, Any], usage_key: str, usage_ttl_s: int, kind: str,
                       parts: int, poll_token: str, poll_at_ms: int, job: QueuedJob,
                       ack: tuple[str, str, str] | None = None) -> bool:
        """The provider took a send (``lua/submitted.lua``, one round trip): bind
        ``provider_id`` (``bind_provider_id``), ``transition`` to ``submitted`` with
        ``fields`` (the event names ``account``), count it in ``usage_key`` (``core.usage``),
        set its poll chain (``set_poll``) and write its poll ``job``, in this order, then ack
        the send job when ``ack`` (its ack set, body hash and redis message id:
        ``core.broker.JobAck``) is given; a record that is gone raises ``UnknownMessage`` with
        only the binding written, as those calls one after another would (the job unacked).
        True when the record is ``submitted`` now, False when the transition was refused
        (final already)."""
        st, tkeys, targs, extra = self._transition_call(msg_id, Status.SUBMITTED, reason="",
                                                        account=account, fields=fields)
        res = int(self._mark_submitted(
            keys=[*tkeys, self.keys.pid(account, provider_id), usage_key, job.queue_key,
                  job.messages_key, *(ack[:2] if ack else ())],
            args=[len(tkeys), len(targs), *targs, msg_id, self.retention_s, kind,
                  max(1, parts), usage_ttl_s, poll_token, poll_at_ms, job.redis_id, job.data,
                  job.doorbell, job.queue_name, *(ack[2:] if ack else ())]))
        if res == -1:
            raise UnknownMessage(msg_id)
        if res in (1, 2):
            self._transitioned(msg_id, st, res, extra)
        return res in (1, 2)

    def schedule_check(self, msg_id: str, at_ms: int) -> None:
        """Set when the status of a non-final record should next be asked for."""
        self.schedule(msg_id, at_ms)

    # --- ids and idempotency
    def bind_provider_id(self, account: str, provider_id: str, msg_id: str) -> None:
        """Remember which message a provider id belongs to (for receipts and webhooks)."""
        self.r.set(self.keys.pid(account, provider_id), msg_id, ex=self.retention_s)

    def by_provider_id(self, account: str, provider_id: str) -> str | None:
        return maybe_text(self.r.get(self.keys.pid(account, provider_id)))

    def next_seq(self, account: str) -> int:
        """A numeric id unique per account, 1..2**31-1 (SMSC accepts client ids in this range)."""
        n = int(self.r.incr(self.keys.seq(account)))
        return (n - 1) % (2**31 - 1) + 1

    def claim_idempotency(self, account: str, key: str, msg_id: str, ttl_s: int) -> str:
        """Bind ``key`` to ``msg_id`` unless it is bound already; returns the bound id."""
        k = self.keys.idem(account, key)
        if self.r.set(k, msg_id, nx=True, ex=ttl_s):
            return msg_id
        existing = self.r.get(k)
        return text(existing) if existing else msg_id

    def release_idempotency(self, account: str, key: str, msg_id: str) -> None:
        self.locks.release(self.keys.idem(account, key), msg_id)  # only if still bound to it

    # --- events
    def events(self, start: str = "-",
               count: int | None = None) -> list[tuple[str, dict[str, str]]]:
        return stream_entries(self.r.xrange(self.events_key, min=start, count=count))

    def events_for(self, ids: Iterable[str]) -> dict[str, list[str]]:
        wanted = set(ids)
        out: dict[str, list[str]] = {i: [] for i in wanted}
        last = "-"
        while True:
            batch = self.events(last, 10_000)
            if last != "-" and batch and batch[0][0] == last:
                batch = batch[1:]
            if not batch:
                break
            for _, ev in batch:
                if ev["id"] in wanted:
                    out[ev["id"]].append(ev["status"])
            last = batch[-1][0]
        return out


class SubmitCall:
    """One call of ``lua/submit.lua`` being built, a message at a time (``Store.submit_many``;
    ``send_many`` adds each message as it is checked, so only its text arguments stay alive
    until the call: a batch leaves the garbage collector next to nothing to look at)."""

    def __init__(self, store: Store, doorbell: str) -> None:
        self.store = store
        # the keys every call names and a new record's status and rank (``_new_record``'s),
        # found once per namespace and stream cap
        head = store._submit_head
        if head is None or head[0] != (store.ns, store.events_maxlen):
            status = next(iter(store.model.statuses))
            head = store._submit_head = (
                (store.ns, store.events_maxlen),
                (store.events_key, store.nonfinal_key, store.stats_key),
                status.value, str(store.model.rank(status)))
        _, keys, self.status, self.rank = head
        self.keys: list[str] = list(keys)
        self.args: list[Any] = [store.events_maxlen, self.status, doorbell]
        self.size = 0

    def add(self, sub: Submission) -> None:
        if sub.doorbell != self.args[2]:
            raise ValueError("one call rings one doorbell: submit each namespace apart")
        store, status = self.store, self.status
        rec_id = sub.msg_id
        ts = now_ms()
        record = {k: v if type(v) is str else _s(v)
                  for k, v in sub.fields.items() if v is not None}
        record.update(id=rec_id, status=status, status_rank=self.rank, created_ms=str(ts),
                      updated_ms=str(ts), attempts=record.get("attempts", "0"))
        idem_key, idem_ttl = sub.idempotency or ("", 0)
        dup_key, dup_ms = sub.duplicate or ("", 0)
        index_key, score, trim = sub.index or ("", "", None)
        self.keys += (store.record_key(rec_id), store.history_key(rec_id), sub.queue_key,
                      sub.messages_key, idem_key, dup_key, index_key)
        # the record as one JSON object: one argument, not 50-odd, for the client to pack
        # (the producer's CPU is what limits a batch; Redis decodes it in a few µs)
        self.args += (rec_id, sub.next_check_ms,
                      orjson.dumps({"id": rec_id, "status": status, "at_ms": ts, "reason": ""}),
                      idem_ttl, dup_ms, sub.job_id, sub.job_data, score,
                      "" if trim is None else trim, sub.queue_name, orjson.dumps(record))
        self.size += 1

    def run(self, client: redis.Redis | None = None) -> Any:
        """Send the call (queue it on ``client``, a pipeline): two reply items per message."""
        return self.store._call_submit(self.keys, self.args, client)


def _flat(fields: Mapping[str, str]) -> list[str]:
    out: list[str] = []
    for k, v in fields.items():
        out += [k, v]
    return out


def _s(v: Any) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False)
    return str(v)

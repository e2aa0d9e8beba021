"""The Python producer API for SMS: ``send_sms``, ``poll_status``, ``status``."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from core import provider_checks, routing
from core.broker import Job, after_enqueue_hooks, enqueue, enqueued, get_broker, prepare
from core.contracts import POLL_STATUS, Kind, Lane, send_actor, send_queue, status_queue
from core.errors import ConfigError, InvalidInput
from core.ids import uuid4_hex
from core.provider_options import OPTIONS
from core.redis_conn import raises_unavailable
from core.settings import Account, Route, Settings, get_settings
from core.sms_text import analyse
from core.store import Store, Submission, SubmitCall, now_ms
from producers import consent, duplicates
from producers import validation as v
from producers.index import ProducerIndex

#: messages per submit-script call in ``send_many`` (Redis runs one while the next is checked):
#: a call's fixed cost is spread thin, and Redis, which runs nothing else during a script,
#: is busy for a few ms (~35 µs of Redis CPU a message), not tens
BATCH_CHUNK = 200

#: the keywords ``send_many``'s items may hold
_SEND_ARGS = {"to", "text", "sender", "account", "lane", "kind", "validity", "idempotency_key",
              "idempotency_ttl_s", "options", "producer", "callback_url", "integration",
              "allow_private_callback"}


#: ``Lane(x)`` and ``Kind(x)`` of a text, as a lookup
_LANES = {m.value: m for m in Lane}
_KINDS = {m.value: m for m in Kind}


def new_message_id() -> str:
    return uuid4_hex()


@dataclass
class _Chunk:
    """A chunk of ``send_many`` sent to Redis: where its messages are in the batch, their ids,
    their jobs (only when middleware wants their after-enqueue) and the call's reply."""

    where: list[int]
    ids: list[str]
    jobs: list[Job]
    replies: Future[Any]


@dataclass(frozen=True)
class Queued:
    """What a send did: ``id`` is the message's; ``duplicate`` when nothing new was queued
    because the same producer sent it already (the same content within the duplicate window,
    or the same idempotency key) and ``id`` is that first message's."""

    id: str
    duplicate: bool = False


#: ``send_many``'s place holder of an accepted item until its chunk's reply is read
_PENDING = Queued("")


#: slots, not frozen: one is built per message on the send path (a frozen dataclass sets
#: each field through object.__setattr__, three times the cost); nothing changes one
@dataclass(slots=True)
class Draft:
    """A message that passed every check of ``send_sms``, not yet accepted."""

    msg_id: str
    account: Account
    lane: Lane
    phone: str
    sender: str | None
    text: str
    fields: dict[str, Any]
    validity_min: int | None
    idempotency_key: str | None
    idempotency_ttl_s: int
    producer: str | None
    #: whose duplicate window and idempotency keys (``Route.scope``: the route's accounts)
    scope: str
    #: the sender the duplicate window compares (what the caller asked for, on a route)
    dup_sender: str | None


class Producer:
    """Validates, writes the record, enqueues, returns the id. Thread-safe."""

    def __init__(self, settings: Settings, store: Store | None = None, broker: Any = None) -> None:
        self.settings = settings
        self.store = store or Store.from_settings(settings)
        self.broker = broker or get_broker(settings)
        #: routes that do not depend on the message, per account named (None: the default
        #: one), found for ``_routes_of`` (``_route``)
        self._routes_of: Settings | None = None
        self._routes: dict[str | None, Route] = {}
        self._one_route = False
        #: (account, lane) -> its send queue and actor
        self._queues: dict[tuple[str, Lane], tuple[str, str]] = {}

    def send_sms(self, to: str, text: str, **kw: Any) -> str:
        """Queue one SMS and return its id (a duplicate's: the first message's).
        See ``queue_sms``."""
        return self.queue_sms(to, text, **kw).id

    @raises_unavailable
    def queue_sms(self, to: str, text: str, *, sender: str | None = None,
                  account: str | None = None, lane: str = "bulk",
                  kind: str = "transactional", validity: int | None = None,
                  idempotency_key: str | None = None, idempotency_ttl_s: int = 24 * 3600,
                  options: dict[str, Any] | None = None, producer: str | None = None,
                  callback_url: str | None = None, integration: str | None = None,
                  allow_private_callback: bool = False) -> Queued:
        """Queue one SMS. Raises InvalidInput naming the field, Unavailable naming Redis and
        its address when Redis does not answer; on any error nothing is enqueued.  Duplicates
        and idempotency keys count per producer (``producers/duplicates.py``): another
        producer's identical send is a new message.

        ``producer`` names who sent it (the HTTP API's token holder; it sees only its own
        messages, listed in its index: ``producers/index.py``); ``callback_url`` receives every
        status change (producers/http/callbacks.py); ``integration`` (``bitrix24:<message
        id>``) has them reported to a Bitrix24 portal instead (producers/http/bitrix24.py).

        One Redis round trip (``core/lua/submit.lua``: idempotency key, duplicate claim,
        record, send job, producer index), two for a promotional message (its consent)."""
        draft = self.check(to, text, sender=sender, account=account, lane=lane, kind=kind,
                           validity=validity, idempotency_key=idempotency_key,
                           idempotency_ttl_s=idempotency_ttl_s, options=options,
                           producer=producer, callback_url=callback_url,
                           integration=integration,
                           allow_private_callback=allow_private_callback)
        return self._accept([draft])[0]

    @raises_unavailable
    def send_many(self, messages: Iterable[Mapping[str, Any]]) -> list[Queued | InvalidInput]:
        """Queue many SMS: each item holds ``send_sms``'s arguments (``to``, ``text`` and its
        keywords) and is checked on its own exactly as ``send_sms`` checks it.  Returns, in
        item order, what each accepted item did (``Queued``: its id, or the first message's
        for a duplicate) or the ``InvalidInput`` that refused it (an
        item refused queues nothing; the others are queued all the same).  The accepted ones
        go to Redis in chunks of ``BATCH_CHUNK``, one script call each (a few round trips in
        all), each sent while the next chunk is checked; each
        message is accepted whole or not at all, so a batch that fails on a Redis error can
        be sent again: what was accepted comes back as the same ids (duplicate window)."""
        out: list[Queued | InvalidInput] = []
        # per chunk: the script call being built, and each message's item index, id and (for
        # middleware that wants its after-enqueue) job; nothing else of a message is kept
        call: SubmitCall | None = None
        where: list[int] = []
        ids: list[str] = []
        jobs: list[Job] = []
        after = after_enqueue_hooks(self.broker)
        inflight: _Chunk | None = None
        # one chunk at a time, in item order (a duplicate later in the batch finds the
        # first's claim); the next chunk is checked while Redis runs the previous one
        with ThreadPoolExecutor(1, thread_name_prefix="gonets-send-many") as redis_io:

            def flush() -> None:
                nonlocal call, where, ids, jobs, inflight
                assert call is not None
                sent = redis_io.submit(call.run)
                if inflight is not None:
                    self._finish(out, inflight)
                inflight = _Chunk(where, ids, jobs, sent)
                call, where, ids, jobs = None, [], [], []

            for i, item in enumerate(messages):
                try:
                    draft = self._check_item(item)
                except InvalidInput as exc:
                    out.append(exc)
                    continue
                sub, job = self._submission(draft)
                if call is None:
                    call = SubmitCall(self.store, sub.doorbell)
                call.add(sub)
                where.append(i)
                ids.append(sub.msg_id)
                if after:
                    jobs.append(job)
                out.append(_PENDING)
                if call.size >= BATCH_CHUNK:
                    flush()
            if call is not None:
                flush()
            if inflight is not None:
                self._finish(out, inflight)
        return out

    def _finish(self, out: list[Queued | InvalidInput], chunk: _Chunk) -> None:
        replies = Store.submitted_many(chunk.replies.result())
        for k, (i, msg_id, reply) in enumerate(zip(chunk.where, chunk.ids, replies, strict=True)):
            out[i] = self._answer(msg_id, reply, chunk.jobs[k] if chunk.jobs else None)

    def _answer(self, msg_id: str, reply: tuple[str, str], job: Job | None) -> Queued:
        """What the submit script's ``(outcome, id)`` for message ``msg_id`` means; ``job``
        (None: no middleware wants it) gets its after-enqueue when it was queued."""
        outcome, got = reply
        if outcome == "exists":  # a fresh uuid4 already taken: never silently reuse it
            raise RuntimeError(f"message id {msg_id} exists already")
        if outcome == "new" and job is not None:
            enqueued(self.broker, job)
        return Queued(got, duplicate=outcome != "new")

    def _check_item(self, item: Any) -> Draft:
        if not isinstance(item, Mapping):
            raise InvalidInput("message", "must be a mapping of send_sms's arguments")
        kw = dict(item)
        unknown = set(kw) - _SEND_ARGS
        if unknown:
            raise InvalidInput(sorted(unknown)[0], "not an argument of send_sms")
        return self.check(kw.pop("to", None), kw.pop("text", None), **kw)

    def check(self, to: Any, text: Any, *, sender: str | None = None,
              account: str | None = None, lane: str = "bulk",
              kind: str = "transactional", validity: int | None = None,
              idempotency_key: str | None = None, idempotency_ttl_s: int = 24 * 3600,
              options: dict[str, Any] | None = None, producer: str | None = None,
              callback_url: str | None = None, integration: str | None = None,
              allow_private_callback: bool = False) -> Draft:
        """Every check of ``send_sms``, nothing written: the message as it will be accepted
        (the account chosen, its record's fields). Raises InvalidInput naming the field."""
        phone = v.normalise_phone(to, self.settings.default_region)
        text = v.check_text(text)
        sender = v.check_sender(sender)
        lane_v = _LANES.get(lane) if isinstance(lane, str) else None  # Lane(lane)
        if lane_v is None:
            raise InvalidInput("lane", "must be 'urgent' or 'bulk'")
        kind_v = _KINDS.get(kind) if isinstance(kind, str) else None
        if kind_v is None:
            raise InvalidInput("kind", "must be 'transactional' or 'promotional'")
        if kind_v is Kind.PROMOTIONAL:
            consent.require_consent(self.store, phone)
        validity = v.check_validity(validity)
        idempotency_key = v.check_idempotency_key(idempotency_key)
        # a private callback target only where the operator allows it (callback_targets.py)
        callback_url = v.check_callback_url(callback_url, allow_private=allow_private_callback)
        try:
            route = self._route(phone, account, kind_v, lane_v)
            acct = self.settings.account(
                routing.choose(self.store.r, self.store.keys, self.settings, route))
        except ConfigError as exc:
            raise InvalidInput("account", str(exc)) from None
        if acct.kind != "sms":
            raise InvalidInput("account", f"{acct.name} is a payments account, not an SMS account")
        info = analyse(text)
        if info.parts > acct.limits.max_parts:
            raise InvalidInput("text", f"needs {info.parts} SMS parts; this account allows at most "
                                       f"{acct.limits.max_parts}")
        opts = self._options(acct.provider, options)
        # a route's accounts may send under different default names: its duplicate window
        # compares what the caller asked for
        dup_sender = sender if len(route.accounts) > 1 else sender or acct.default_sender
        # no name asked for on a route: an account it moves to sends under its own default
        sender_default = 1 if len(route.accounts) > 1 and not sender else None
        sender = sender or acct.default_sender
        provider_checks.check(acct.provider, phone, text, sender)
        fields: dict[str, Any] = {
            "account": acct.name, "provider": acct.provider, "lane": lane_v.value,
            "kind": kind_v.value, "phone": phone, "text": text, "sender": sender,
            "encoding": info.encoding, "parts": info.parts, "validity_min": validity,
            "options": opts or None, "idempotency_key": idempotency_key,
            "producer": producer, "callback_url": callback_url, "integration": integration,
            "callback_private": 1 if callback_url and allow_private_callback else None,
            # a route of several accounts: the worker may move the message along it
            "route": route.key if len(route.accounts) > 1 else None,
            "sender_default": sender_default,
        }
        return Draft(msg_id=new_message_id(), account=acct, lane=lane_v, phone=phone,
                     sender=sender, text=text, fields=fields, validity_min=validity,
                     idempotency_key=idempotency_key, idempotency_ttl_s=idempotency_ttl_s,
                     producer=producer, scope=route.scope, dup_sender=dup_sender)

    def _route(self, phone: str, account: str | None, kind: Kind, lane: Lane) -> Route:
        """The message's route: the named account's, else ``Settings.route_for``'s.  Settings
        are frozen, so where the answer cannot depend on the message (a named account; no
        ``[[routes]]`` and no ``route_prefixes``: ``default_account`` or the only SMS account)
        it is found once per settings object."""
        settings = self.settings
        if self._routes_of is not settings:
            one_route = not settings.routes and not any(
                a.route_prefixes for a in settings.sms_accounts())
            self._routes, self._one_route, self._routes_of = {}, one_route, settings
        key = account if account else None if self._one_route else ""
        if key == "":
            return settings.route_for(phone, kind=kind.value, lane=lane.value)
        route = self._routes.get(key)
        if route is None:
            route = (Route(accounts=[settings.account(account).name]) if account
                     else settings.route_for(phone, kind=kind.value, lane=lane.value))
            self._routes[key] = route
        return route

    def _submission(self, d: Draft) -> tuple[Submission, Job]:
        """Every key the message claims or writes, built in this one place."""
        where = self._queues.get((d.account.name, d.lane))
        if where is None:
            where = self._queues[(d.account.name, d.lane)] = (send_queue(d.account.name, d.lane),
                                                                send_actor(d.lane))
        job = prepare(self.broker, *where, d.msg_id)
        created = now_ms()
        fields = d.fields
        if d.validity_min is not None:
            fields = {**fields, "expires_ms": created + d.validity_min * 60_000}
        # duplicates and idempotency keys count across the route
        idem = None if d.idempotency_key is None else (self.store.keys.idem(
            d.scope, duplicates.idempotency_key(d.producer, d.idempotency_key)),
            d.idempotency_ttl_s)
        index = ProducerIndex(self.store).entry(d.producer) if d.producer else None
        sub = Submission(
            # the status sweep first looks at it when its send job should have moved it
            msg_id=d.msg_id, fields=fields,
            next_check_ms=created + int(self.settings.reconcile_after_s * 1000),
            queue_key=job.queue_key, messages_key=job.messages_key, job_id=job.redis_id,
            job_data=job.data, doorbell=job.doorbell, queue_name=job.message.queue_name,
            idempotency=idem,
            duplicate=duplicates.claim(self.store, d.account, d.producer, d.phone,
                                       d.dup_sender, d.text, scope=d.scope),
            index=index)
        return sub, job

    def _accept(self, drafts: list[Draft]) -> list[Queued]:
        """Run the submit script for the drafts (one call)."""
        subs = [self._submission(d) for d in drafts]
        return self._answers(subs, self._execute(subs))

    def _execute(self, subs: list[tuple[Submission, Job]]) -> list[tuple[str, str]]:
        return Store.submitted_many(self.store.submit_many([sub for sub, _ in subs]))

    def _answers(self, subs: list[tuple[Submission, Job]],
                 replies: list[tuple[str, str]]) -> list[Queued]:
        after = after_enqueue_hooks(self.broker)
        return [self._answer(sub.msg_id, reply, job if after else None)
                for (sub, job), reply in zip(subs, replies, strict=True)]

    def _options(self, provider: str, options: dict[str, Any] | None) -> dict[str, Any]:
        if not options:
            return {}
        if not isinstance(options, dict):
            raise InvalidInput("options", "must be a mapping")
        model = OPTIONS.get(provider)
        if model is None:
            raise InvalidInput("options", f"provider {provider} takes no per-message options")
        try:
            return model.model_validate(options).model_dump(exclude_defaults=True)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(x) for x in err["loc"])
            msg = "unknown option" if err["type"] == "extra_forbidden" else err["msg"]
            raise InvalidInput(f"options.{where}", msg) from None

    @raises_unavailable
    def poll_status(self, msg_id: str) -> None:
        """Ask the provider for the status of ``msg_id`` now (enqueues a status-poll job)."""
        rec = self.store.get(msg_id)
        enqueue(self.broker, status_queue(rec["account"]), POLL_STATUS, msg_id)

    @raises_unavailable
    def status(self, msg_id: str) -> dict[str, Any]:
        """The record (without the text) and its status history."""
        rec: dict[str, Any] = dict(self.store.get(msg_id))
        rec.pop("text", None)
        rec["history"] = self.store.history(msg_id)
        return rec


_default: Producer | None = None
_default_lock = threading.Lock()


def get_producer() -> Producer:
    global _default
    with _default_lock:
        if _default is None:
            _default = Producer(get_settings())
        return _default


def send_sms(to: str, text: str, **kw: Any) -> str:
    """Queue one SMS with the process-wide settings. See Producer.send_sms."""
    return get_producer().send_sms(to, text, **kw)


def poll_status(msg_id: str) -> None:
    get_producer().poll_status(msg_id)


def status(msg_id: str) -> dict[str, Any]:
    return get_producer().status(msg_id)

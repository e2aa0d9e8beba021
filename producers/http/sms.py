"""SMS routes: send one, send a batch, read one, list.

A message sent through the API carries its producer (the token's) on the record, and its id is
added to the producer's index (``producers/index.py``), which lists it.

A producer sees only its own messages: another producer's id answers 404, as an unknown one.
Duplicates and idempotency keys count per producer too (``producers/duplicates.py``); a send
that queued nothing new because this producer sent the same already says so: the header
``Gonets-Duplicate-Of: <id>`` (``"duplicate_of"`` on a batch item) names the first message,
whose id the answer carries.

Single sends that arrive together share one Redis round trip (``SendGroup``): the API's
costliest steps for one SMS were its Redis call and the system calls around it (profile of
``make bench``'s ``api_single``).
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from starlette.routing import Route

from core.contracts import Status
from core.errors import InvalidInput
from core.redis_conn import unavailable
from producers.http.framework import MAX_BATCH_BODY_BYTES, Api, Call, Reply
from producers.http.models import BatchIn, SmsIn
from producers.http.problem import ApiError, field_path, from_validation
from producers.http.render import event_out, iso
from producers.index import ProducerIndex
from producers.sms import BATCH_CHUNK, Producer, Queued

#: the header of an answer that queued nothing new: the id of the message it repeats
DUPLICATE_HEADER = "Gonets-Duplicate-Of"

PAGE_DEFAULT = 100
PAGE_MAX = 1000
#: entries of the index looked at per list call when filters skip most of them
SCAN_MAX = 5000


def parse_since(raw: str) -> int:
    """An ISO 8601 date-time (``2026-11-22T10:00:00Z``) or a date, as ms."""
    try:
        dt = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ApiError(422, "must be an ISO 8601 date-time, e.g. 2026-11-22T10:00:00Z",
                       field="since") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        return int(dt.timestamp() * 1000)
    except (OverflowError, ValueError, OSError):
        raise ApiError(422, "out of range", field="since") from None


class SendGroup:
    """``POST /v1/sms`` requests that arrive together, sent to Redis in one round trip.

    Each request is checked and its job prepared in its own task, on the event loop (its
    errors are its own; the job carries that request's trace), then waits.  The first to wait
    schedules the flush with ``call_soon``: it runs once the loop has handled every request it
    read in this pass, and hands the waiting submissions, in arrival order, to the producer's
    submit step (``Producer._execute``: one script call for up to ``BATCH_CHUNK`` of them,
    each message whole, as for ``send_many``), the step ``Producer.queue_sms`` takes with one.
    A request alone waits for nothing; under load, a pass of the loop holds a few to a few
    dozen.  A Redis error fails every request of the flush with 503 (a message it did accept
    is found again by a retry: the duplicate window answers with its id, as for a batch)."""

    def __init__(self, producer: Producer) -> None:
        self.producer = producer
        self.waiting: list[tuple[Any, asyncio.Future[Queued]]] = []

    async def send(self, kw: dict[str, Any]) -> Queued:
        """``Producer.queue_sms(**kw)``. Raises InvalidInput, Unavailable."""
        p = self.producer
        with unavailable(p.settings.redis_url):  # routing and consent may ask Redis
            # the producer's own steps of queue_sms: check, then the submission (its job is
            # prepared here, in this request's context: the trace it carries is this one's)
            submission = p._submission(p.check(kw.pop("to"), kw.pop("text"), **kw))
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Queued] = loop.create_future()
        self.waiting.append((submission, done))
        if len(self.waiting) == 1:
            self._schedule(loop)
        return await done

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        # in a context of its own: the flush is every waiting request's, not the first's
        loop.call_soon(self._flush, loop, context=contextvars.Context())

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        # no longer a script call than send_many's: Redis runs nothing else meanwhile
        group, self.waiting = self.waiting[:BATCH_CHUNK], self.waiting[BATCH_CHUNK:]
        if self.waiting:
            self._schedule(loop)
        subs = [sub for sub, _ in group]
        p = self.producer
        try:
            with unavailable(p.settings.redis_url):
                got = p._answers(subs, p._execute(subs))
        except Exception as exc:
            for _, done in group:
                if not done.done():
                    done.set_exception(exc)
            return
        for (_, done), queued in zip(group, got, strict=True):
            if not done.done():  # the request was cancelled (the server stops)
                done.set_result(queued)


class SmsRoutes:
    def __init__(self, api: Api) -> None:
        self.api = api
        self.store = api.store
        self.group = SendGroup(api.producer)

    @property
    def index(self) -> ProducerIndex:
        return ProducerIndex(self.store)

    # --- sending
    def _item(self, call: Call, item: Any, prefix: str = "",
              private: dict[str, bool] | None = None) -> dict[str, Any]:
        """``send_sms``'s arguments of one request item (raises the 422 of a bad item).
        ``private`` caches the producer's private-callbacks setting across a batch."""
        try:
            m = SmsIn.model_validate(item)
        except ValidationError as exc:
            raise from_validation(exc, prefix) from None
        allow = False
        if m.callback_url:  # asked only when there is a target to judge
            private = {} if private is None else private
            if "allow" not in private:
                private["allow"] = self.api.tokens.allows_private_callbacks(call.producer)
            allow = private["allow"]
        # the idempotency key is scoped to the producer by the producer API
        return {"to": m.to, "text": m.text, "sender": m.sender, "account": m.account,
                "lane": m.lane, "kind": m.kind, "validity": m.validity,
                "idempotency_key": m.idempotency_key, "options": m.options,
                "producer": call.producer, "callback_url": m.callback_url,
                "allow_private_callback": allow}

    @staticmethod
    def _refused(exc: InvalidInput, prefix: str = "") -> ApiError:
        # worded for an HTTP client where it says how to fix it
        return ApiError(422, getattr(exc, "http_reason", exc.reason),
                        field=field_path([exc.field], prefix))

    def send_one(self, call: Call) -> Reply:
        """A request with ``Idempotency-Key``, in a thread (framework.py says why)."""
        kw = self._item(call, call.json())
        try:  # the producer lists it in the producer's index in the same step
            got = self.api.producer.queue_sms(kw.pop("to"), kw.pop("text"), **kw)
        except InvalidInput as exc:
            raise self._refused(exc) from None
        return self._accepted(got)

    async def send_one_on_loop(self, call: Call) -> Reply:
        """``send_one`` on the event loop, sent to Redis with the requests beside it."""
        kw = self._item(call, call.json())
        try:
            got = await self.group.send(kw)
        except InvalidInput as exc:
            raise self._refused(exc) from None
        return self._accepted(got)

    @staticmethod
    def _accepted(got: Queued) -> Reply:
        msg_id = got.id
        headers = {"Location": f"/v1/sms/{msg_id}"}
        if got.duplicate:
            headers[DUPLICATE_HEADER] = msg_id
        return Reply(202, {"id": msg_id, "status": "queued"}, headers)

    def send_batch(self, call: Call) -> Reply:
        try:
            batch = BatchIn.model_validate(call.json())
        except ValidationError as exc:
            raise from_validation(exc) from None
        results: list[dict[str, Any]] = []
        items: list[dict[str, Any]] = []
        where: list[int] = []
        private: dict[str, bool] = {}
        for i, item in enumerate(batch.messages):
            try:
                items.append(self._item(call, item, private=private))
                where.append(i)
                results.append({})
            except ApiError as exc:
                results.append({"index": i, "error": {"field": exc.field or "body",
                                                      "detail": exc.detail}})
        # each item checked as send_sms checks it; the accepted ones go to Redis in pipelines
        for i, got in zip(where, self.api.producer.send_many(items), strict=True):
            if isinstance(got, InvalidInput):
                err = self._refused(got)
                results[i] = {"index": i, "error": {"field": err.field or "body",
                                                    "detail": err.detail}}
            else:
                results[i] = {"index": i, "id": got.id}
                if got.duplicate:
                    results[i]["duplicate_of"] = got.id
        accepted = sum(1 for r in results if "id" in r)
        return Reply(200, {"accepted": accepted, "rejected": len(results) - accepted,
                           "results": results})

    # --- reading
    def _own(self, call: Call, msg_id: str) -> dict[str, str]:
        rec = self.store.find(msg_id) if len(msg_id) <= 64 else None
        if rec is None or rec.get("producer") != call.producer:
            raise ApiError(404, "no such message (or not yours, or expired after retention)")
        return rec

    def get_one(self, call: Call) -> Reply:
        msg_id = call.path_params["id"]
        rec = self._own(call, msg_id)
        out = record_out(rec)
        out["history"] = [event_out(e) for e in self.store.history(msg_id)]
        return Reply(200, out)

    def list(self, call: Call) -> Reply:
        q = call.query
        unknown = set(q.keys()) - {"status", "account", "since", "limit", "cursor"}
        if unknown:
            raise ApiError(422, "unknown query parameter", field=sorted(unknown)[0])
        status = q.get("status")
        if status is not None and status not in {s.value for s in Status}:
            raise ApiError(422, f"one of {', '.join(s.value for s in Status)}", field="status")
        account = q.get("account")
        limit_raw = q.get("limit", str(PAGE_DEFAULT))
        if not limit_raw.isdigit() or not 1 <= int(limit_raw) <= PAGE_MAX:
            raise ApiError(422, f"a whole number from 1 to {PAGE_MAX}", field="limit")
        limit = int(limit_raw)
        index = self.index
        producer = call.producer
        cursor = q.get("cursor")
        if cursor:
            start = self._cursor_start(producer, cursor)
        elif q.get("since"):
            start = index.count_before(producer, parse_since(q["since"]), inclusive=False)
        else:
            start = 0
        items: list[dict[str, Any]] = []
        scanned = 0
        last: tuple[str, float] | None = None
        exhausted = False
        while len(items) < limit and scanned < SCAN_MAX:
            chunk = index.page(producer, start + scanned, min(500, SCAN_MAX))
            if not chunk:
                exhausted = True
                break
            recs = index.records([msg_id for msg_id, _ in chunk])
            for (msg_id, score), rec in zip(chunk, recs, strict=True):
                scanned += 1
                last = (msg_id, score)
                if not rec:
                    continue  # expired after retention
                if (status and rec.get("status") != status) or \
                        (account and rec.get("account") != account):
                    continue
                items.append(record_out(rec))
                if len(items) == limit:
                    break
        if not exhausted and last is not None and \
                index.size(producer) <= start + scanned:
            exhausted = True
        next_cursor = None if exhausted or last is None else _encode_cursor(*last)
        return Reply(200, {"items": items, "next_cursor": next_cursor})

    def _cursor_start(self, producer: str, cursor: str) -> int:
        try:
            raw = base64.urlsafe_b64decode(cursor.encode() + b"==").decode()
            msg_id, _, score_s = raw.partition(" ")
            score = float(score_s)
        except (ValueError, UnicodeDecodeError):
            raise ApiError(422, "not a cursor this API gave out", field="cursor") from None
        rank = self.index.position(producer, msg_id)
        if rank is not None:
            return rank + 1
        # the entry was trimmed since: continue after its time
        return self.index.count_before(producer, score)


def _encode_cursor(msg_id: str, score: float) -> str:
    return base64.urlsafe_b64encode(f"{msg_id} {int(score)}".encode()).decode().rstrip("=")


_OUT_FIELDS = ("provider_id", "provider_status", "error_code", "reason", "callback_url",
               "sender", "encoding", "lost_answer")


def record_out(rec: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": rec["id"], "status": rec["status"], "account": rec.get("account", ""),
        "to": "+" + rec.get("phone", ""), "lane": rec.get("lane", "bulk"),
        "kind": rec.get("kind", "transactional"), "parts": int(rec.get("parts") or 1),
        "created_at": iso(rec.get("created_ms")), "updated_at": iso(rec.get("updated_ms")),
    }
    if rec.get("validity_min"):
        out["validity"] = int(rec["validity_min"])
    for k in _OUT_FIELDS:
        if rec.get(k):
            out[k] = rec[k]
    if rec.get("waiting_reason") and not Status(rec["status"]).final \
            and rec["status"] != "submitted":
        out["waiting_reason"] = rec["waiting_reason"]
    return out


def routes(api: Api) -> list[Route]:
    s = SmsRoutes(api)
    return [
        api.route("/v1/sms", s.send_one, methods=["POST"], scope="send", idempotent=True,
                  name="send_sms", on_loop=s.send_one_on_loop),
        api.route("/v1/sms/batch", s.send_batch, methods=["POST"], scope="send",
                  idempotent=True, max_body=MAX_BATCH_BODY_BYTES, name="send_sms_batch"),
        api.route("/v1/sms", s.list, methods=["GET"], scope="read", name="list_sms"),
        api.route("/v1/sms/{id}", s.get_one, methods=["GET"], scope="read", name="get_sms"),
    ]

"""The producer path in one step: ``send_sms`` is one Redis call (core/lua/submit.lua) that
claims the keys, writes the record and its dramatiq job; ``send_many`` checks each item as
``send_sms`` does and answers per item."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import dramatiq
import pytest
from dramatiq.encoder import JSONEncoder
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from core.broker import _KNOWN_FIELDS, _asdict, _encode, enqueue
from core.errors import InvalidInput
from core.store import Store
from producers import Producer, duplicates
from producers.index import ProducerIndex
from producers.sms import Queued


def _calls(store: Store) -> dict[str, int]:
    stats = store.r.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


def _queued(producer: Producer, queue: str) -> list[dramatiq.Message[Any]]:
    ns = producer.broker.namespace
    r = producer.store.r
    return [dramatiq.Message.decode(r.hget(f"{ns}:{queue}.msgs", rid).encode())
            for rid in r.lrange(f"{ns}:{queue}", 0, -1)]


def test_send_sms_is_one_redis_call_and_its_job_is_what_enqueue_writes(producer, store) -> None:
    producer.send_sms("+375291234500", "warm up the script cache")
    before = _calls(store)
    msg_id = producer.send_sms("+375291234567", "one call", producer="shop")
    after = _calls(store)
    made = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    # the client's own INFO is the only other command; everything else ran inside the script
    assert made.pop("info") == 1
    assert made.pop("evalsha") == 1
    assert made.pop("publish") == 1  # the doorbell, rung by the script (core/doorbell.py)
    assert {k: n for k, n in made.items() if n and not k.startswith(("hset", "rpush", "xadd",
            "zadd", "hincrby", "hget", "get", "set", "exists",
            # the index trim, run by the script on a random share of sends
            "zremrangebyscore"))} == {}
    rec = store.get(msg_id)
    assert rec["status"] == "queued" and rec["producer"] == "shop"
    assert store.history(msg_id)[0]["status"] == "queued"
    assert ProducerIndex(store).position("shop", msg_id) == 0
    # the job reads back exactly as one core.broker.enqueue writes
    ref = enqueue(producer.broker, "sms.smsc.bulk", "send_sms", "reference")
    jobs = _queued(producer, "sms.smsc.bulk")
    ours = next(j for j in jobs if j.args == (msg_id,))
    theirs = next(j for j in jobs if j.args == ("reference",))
    assert theirs.message_id == ref.message_id
    assert ours.queue_name == theirs.queue_name and ours.actor_name == theirs.actor_name
    assert set(ours.options) == set(theirs.options) == {"redis_message_id"}
    assert ours.kwargs == theirs.kwargs == {}


def test_send_many_checks_each_item_as_send_sms_and_answers_per_index(producer, store) -> None:
    items: list[Any] = [
        {"to": "+375291234567", "text": "first"},
        {"to": "not a number", "text": "bad phone"},
        {"to": "+375291234568", "text": "hi", "lane": "fast"},
        "not a mapping",
        {"to": "+375291234569", "text": "hi", "colour": "red"},
        {"to": "+375291234567", "text": "first"},  # a duplicate of item 0 in the same batch
        {"to": "+375291234570", "text": "keyed", "idempotency_key": "k-1", "producer": "shop"},
        {"to": "+375291234571", "text": "other text, same key", "idempotency_key": "k-1"},
        {"to": "+375291234572", "text": "same key, same producer", "idempotency_key": "k-1",
         "producer": "shop"},
    ]
    got = producer.send_many(items)
    assert len(got) == len(items)
    for i, field in ((1, "to"), (2, "lane"), (3, "message"), (4, "colour")):
        assert isinstance(got[i], InvalidInput) and got[i].field == field, (i, got[i])
    # the same refusal send_sms gives, word for word
    with pytest.raises(InvalidInput) as e:
        producer.send_sms("+375291234568", "hi", lane="fast")
    assert str(e.value) == str(got[2])
    assert isinstance(got[8], Queued) and isinstance(got[6], Queued)
    assert (got[8].id, got[8].duplicate) == (got[6].id, True)
    ok = [got[i] for i in (0, 5, 6, 7)]
    assert all(isinstance(x, Queued) for x in ok)
    ids = [x.id for x in ok if isinstance(x, Queued)]
    assert ids[1] == ids[0] and ids[3] != ids[2]  # item 7 names no producer: another tenant
    assert [x.duplicate for x in ok if isinstance(x, Queued)] == [False, True, False, False]
    assert producer.broker.do_qsize("sms.smsc.bulk") == 3
    assert {j.args[0] for j in _queued(producer, "sms.smsc.bulk")} == {ids[0], ids[2], ids[3]}
    assert ProducerIndex(store).size("shop") == 1
    # sent again (say after a lost answer): the same ids, nothing new queued
    again = producer.send_many(items[:1] + items[6:7])
    assert [(x.id, x.duplicate) for x in again if isinstance(x, Queued)] == \
        [(ids[0], True), (ids[2], True)]
    assert producer.broker.do_qsize("sms.smsc.bulk") == 3


def test_send_many_in_several_pipelines_loses_and_doubles_nothing(producer, store,
                                                                  monkeypatch) -> None:
    monkeypatch.setattr("producers.sms.BATCH_CHUNK", 7)
    items = [{"to": f"+3752912{i:05d}", "text": f"many {i}"} for i in range(30)]
    items[11] = {"to": "", "text": "no number"}
    got = producer.send_many(items)
    ids = [x.id for x in got if isinstance(x, Queued)]
    assert len(ids) == len(set(ids)) == 29 and isinstance(got[11], InvalidInput)
    assert sorted(j.args[0] for j in _queued(producer, "sms.smsc.bulk")) == sorted(ids)
    assert all(store.get(i)["status"] == "queued" for i in ids)


def test_send_many_is_one_script_call_and_one_doorbell_per_chunk(producer, store,
                                                                 monkeypatch) -> None:
    """A chunk of messages goes to Redis as one call of the submit script, which rings each
    queue's doorbell once: 20 messages to two queues in chunks of 8 are three calls."""
    monkeypatch.setattr("producers.sms.BATCH_CHUNK", 8)
    producer.send_sms("+375291234500", "warm up the script cache")
    items = [{"to": f"+3752913{i:05d}", "text": f"chunked {i}",
              "lane": "urgent" if i % 2 else "bulk"} for i in range(20)]
    before = _calls(store)
    got = producer.send_many(items)
    after = _calls(store)
    made = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    assert all(isinstance(x, Queued) and not x.duplicate for x in got)
    assert made["evalsha"] == 3
    assert made["publish"] == 3 * 2  # each call: the bulk queue's and the urgent queue's
    assert made["xadd"] == made["hincrby"] == 20  # every message still its own event
    assert producer.broker.do_qsize("sms.smsc.bulk") == 10 + 1
    assert producer.broker.do_qsize("sms.smsc.urgent") == 10


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False,
                                                                        allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12)


@given(options=st.dictionaries(st.text(), JSON_VALUES, max_size=5), arg=st.text())
@hsettings(max_examples=300, deadline=None)
def test_a_job_encodes_to_what_dramatiq_decodes_as_its_own(options: dict[str, Any],
                                                            arg: str) -> None:
    """The job data the submit script writes (orjson) reads back through dramatiq's decoder
    as the message dramatiq's own encoder would have written, whatever its options hold."""
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name="sms.smsc.bulk", actor_name="send_sms", args=(arg,), kwargs={},
        options=options)
    assert type(dramatiq.get_encoder()) is JSONEncoder  # so orjson writes it
    decode = dramatiq.get_encoder().decode
    assert decode(_encode(message)) == decode(message.encode())
    assert _KNOWN_FIELDS and _asdict(message) == message.asdict()  # the fast path, in use


def test_the_record_reads_back_as_sent_through_the_scripts_json(producer, store) -> None:
    """submit.lua takes the record as one JSON object: quotes, backslashes, control
    characters, emoji and line separators come back unchanged, every field a string."""
    text = "q\"b\\s\x01\x1f\ttab\nline €{} 😀 \u2028\u2029 Привет\x7f"
    msg_id = producer.send_sms("+375291234567", text, sender="Shop", validity=30,
                               idempotency_key="k\"1", producer="shop")
    rec = store.get(msg_id)
    assert rec["text"] == text and rec["sender"] == "Shop" and rec["validity_min"] == "30"
    assert rec["idempotency_key"] == "k\"1" and rec["producer"] == "shop"
    assert rec["account"] == "smsc" and rec["status"] == "queued" and rec["id"] == msg_id
    assert store.r.hget(store.key("stats"), "smsc|queued|") == "1"


@given(producer=st.none() | st.text(), phone=st.text(), sender=st.none() | st.text(),
       text=st.text())
@hsettings(max_examples=500, deadline=None)
def test_the_duplicate_fingerprint_is_the_json_encoders(producer: str | None, phone: str,
                                                        sender: str | None, text: str) -> None:
    """The duplicate key's fingerprint, its JSON written directly, is the hash of what
    ``json.dumps`` writes for any text (quotes, backslashes, control characters, non-ASCII):
    a key claimed before still matches."""
    raw = json.dumps([producer or "-", phone, sender or "", text], ensure_ascii=False)
    assert duplicates.fingerprint(producer, phone, sender, text) == \
        hashlib.sha256(raw.encode("utf-8")).hexdigest()


def test_middleware_added_later_sees_every_send(producer, store) -> None:
    """A middleware added after sends began (sentry-sdk adds its own) has its before- and
    after-enqueue hooks called for each message as ``broker.enqueue`` would, its options
    written into the job; one whose hook fails is logged, the send goes on."""
    producer.send_sms("+375291234500", "before the middleware")
    seen: list[str] = []

    class Stamp(dramatiq.Middleware):
        def before_enqueue(self, broker: Any, message: Any, delay: Any) -> None:
            message.options["stamp"] = "yes"
            seen.append("before")

        def after_enqueue(self, broker: Any, message: Any, delay: Any) -> None:
            seen.append("after")

    class Broken(dramatiq.Middleware):
        def before_enqueue(self, broker: Any, message: Any, delay: Any) -> None:
            raise ValueError("a broken middleware")

    producer.broker.add_middleware(Stamp())
    producer.broker.add_middleware(Broken())
    try:
        got = producer.send_many([{"to": "+375291234501", "text": "a"},
                                  {"to": "+375291234502", "text": "b"}])
    finally:
        producer.broker.middleware[:] = [m for m in producer.broker.middleware
                                         if not isinstance(m, (Stamp, Broken))]
    assert seen == ["before", "before", "after", "after"]
    ids = {x.id for x in got if isinstance(x, Queued)}
    jobs = [j for j in _queued(producer, "sms.smsc.bulk") if j.args[0] in ids]
    assert len(jobs) == 2 and all(j.options["stamp"] == "yes" for j in jobs)

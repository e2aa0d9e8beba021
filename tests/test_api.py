"""The HTTP API over real HTTP: uvicorn on a free port, a real Redis, a real worker process and
the SMSC sandbox."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from producers.http.callbacks import verify
from producers.http.models import BatchOut, SmsOut
from producers.http.problem import ApiError
from producers.http.smsc_webhook import parse_callback
from tests.support import CALLBACK_SECRET, control, poll_until, wait_final

ROOT = Path(__file__).resolve().parent.parent
PROBLEM = "application/problem+json"


def _problem(resp: httpx.Response, status: int, field: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM)
    body = resp.json()
    assert body["status"] == status and body["title"] and body["detail"]
    if field is not None:
        assert body.get("field") == field, body
    return body


# --- sending and reading ---------------------------------------------------------------------

def test_send_one_through_a_worker_to_delivered_with_history(client, store, start_worker):
    start_worker(threads=2)
    resp = client.post("/v1/sms", json={"to": "+375 29 123-45-67", "text": "Your code is 4711",
                                        "lane": "urgent", "validity": 5})
    assert resp.status_code == 202, resp.text
    msg_id = resp.json()["id"]
    assert resp.headers["location"] == f"/v1/sms/{msg_id}"
    assert wait_final(store, [msg_id])[msg_id] == "delivered"
    got = client.get(f"/v1/sms/{msg_id}").json()
    SmsOut.model_validate(got)  # the documented shape
    assert got["status"] == "delivered" and got["to"] == "+375291234567"
    assert got["lane"] == "urgent" and got["validity"] == 5 and got["parts"] == 1
    assert [e["status"] for e in got["history"]] == ["queued", "submitted", "delivered"]
    assert "text" not in got
    assert store.get(msg_id)["producer"] == "shop"


def test_batch_with_mixed_items_queues_the_valid_ones_and_names_each_error(
        client, store, smsc, start_worker):
    items = [
        {"to": "+375291000001", "text": "one"},
        {"to": "+37529", "text": "bad number"},
        {"to": "+375291000003", "text": "three", "sender": "Shop"},
        {"to": "+375291000004", "text": 42},
        {"to": "+375291000005", "text": "five", "colour": "red"},
        {"to": "+375291000006", "text": "six", "options": {"translit": 7}},
        "not an object",
    ]
    start_worker(threads=4)
    resp = client.post("/v1/sms/batch", json={"messages": items})
    assert resp.status_code == 200, resp.text
    out = resp.json()
    BatchOut.model_validate(out)
    assert out["accepted"] == 2 and out["rejected"] == 5
    res = out["results"]
    assert [r["index"] for r in res] == list(range(7))
    assert "id" in res[0] and "id" in res[2]
    assert res[1]["error"]["field"] == "to"
    assert res[3]["error"]["field"] == "text"
    assert res[4]["error"] == {"field": "colour", "detail": "unknown field"}
    assert res[5]["error"]["field"] == "options.translit"
    assert res[6]["error"]["field"] == "body"
    ids = [res[0]["id"], res[2]["id"]]
    assert set(wait_final(store, ids).values()) == {"delivered"}
    assert smsc.counters["accepted"] == 2


def test_list_pages_filters_and_shows_only_own_messages(api, client, tokens, store):
    ids = [client.post("/v1/sms", json={"to": f"+37529200000{i}", "text": f"m{i}"}).json()["id"]
           for i in range(5)]
    other = tokens.create("other-shop", "send,read")
    with httpx.Client(base_url=api.url,
                      headers={"Authorization": f"Bearer {other.token}"}) as c2:
        their = c2.post("/v1/sms", json={"to": "+375292000009", "text": "theirs"}).json()["id"]
        # another producer's message is as good as unknown
        _problem(c2.get(f"/v1/sms/{ids[0]}"), 404)
        assert [x["id"] for x in c2.get("/v1/sms").json()["items"]] == [their]
    store.transition(ids[1], "submitted")
    store.transition(ids[1], "delivered")
    seen, cursor = [], None
    while True:
        page = client.get("/v1/sms", params={"limit": 2, **({"cursor": cursor} if cursor
                                                            else {})}).json()
        assert len(page["items"]) <= 2
        seen += [x["id"] for x in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids
    delivered = client.get("/v1/sms", params={"status": "delivered"}).json()["items"]
    assert [x["id"] for x in delivered] == [ids[1]]
    assert client.get("/v1/sms", params={"account": "nope"}).json()["items"] == []
    assert client.get("/v1/sms", params={"since": "2999-01-01T00:00:00Z"}).json()["items"] == []
    assert len(client.get("/v1/sms", params={"since": "2020-01-01"}).json()["items"]) == 5
    _problem(client.get("/v1/sms", params={"status": "lost"}), 422, "status")
    _problem(client.get("/v1/sms", params={"limit": "0"}), 422, "limit")
    _problem(client.get("/v1/sms", params={"cursor": "!!"}), 422, "cursor")


# --- auth ------------------------------------------------------------------------------------

def test_every_auth_failure(api, tokens, token):
    body = {"to": "+375291234567", "text": "hi"}
    with httpx.Client(base_url=api.url) as c:
        r = c.post("/v1/sms", json=body)
        _problem(r, 401)
        assert r.headers["www-authenticate"].startswith("Bearer")
        _problem(c.post("/v1/sms", json=body, headers={"Authorization": "Basic abc"}), 401)
        _problem(c.post("/v1/sms", json=body, headers={"Authorization": "Bearer"}), 401)
        wrong = token.token[:-4] + ("AAAA" if not token.token.endswith("AAAA") else "BBBB")
        _problem(c.post("/v1/sms", json=body, headers={"Authorization": f"Bearer {wrong}"}),
                 401)
        reader = tokens.create("shop", "read")
        r = c.post("/v1/sms", json=body, headers={"Authorization": f"Bearer {reader.token}"})
        _problem(r, 403, "scope")
        sender = tokens.create("shop", "send")
        auth = {"Authorization": f"Bearer {sender.token}"}
        r = c.post("/v1/sms", json=body, headers=auth)
        assert r.status_code == 202
        _problem(c.get(f"/v1/sms/{r.json()['id']}", headers=auth), 403, "scope")
        assert tokens.revoke(sender.id)
        _problem(c.post("/v1/sms", json=body, headers=auth), 401)
    # only hashes are stored
    dump = json.dumps({k: tokens.r.dump(k).hex() if tokens.r.type(k) != "none" else ""
                       for k in tokens.r.keys("*")})
    assert token.token not in dump and token.token.encode().hex() not in dump


def test_a_remembered_token_costs_no_redis_call_and_a_revocation_still_stops_it_at_once(
        api, tokens, store):
    """The API remembers a token it verified (no Redis lookup per call) and forgets it the
    moment it is revoked, even when its subscription to revocations was cut just before."""

    def lookups() -> int:
        return int(store.r.info("commandstats").get("cmdstat_hgetall", {}).get("calls", 0))

    with httpx.Client(base_url=api.url) as c:
        def send(token: str) -> httpx.Response:
            return c.post("/v1/sms", json={"to": "+375291234567", "text": "remembered"},
                          headers={"Authorization": f"Bearer {token}"})

        def remembered(token: str) -> bool:
            before = lookups()
            return send(token).status_code == 202 and lookups() == before

        first = tokens.create("shop", "send")
        poll_until(lambda: remembered(first.token), 10, "the token remembered")
        assert all(remembered(first.token) for _ in range(5))
        assert tokens.revoke(first.id)
        _problem(send(first.token), 401)

        # the API's connection to the revocation channel cut, a revocation made before the
        # API notices: it trusts nothing it remembered from before the cut
        second = tokens.create("shop", "send")
        poll_until(lambda: remembered(second.token), 10, "the second token remembered")
        assert store.r.client_kill_filter(_type="pubsub") >= 1
        assert tokens.revoke(second.id)
        _problem(send(second.token), 401)
        third = tokens.create("shop", "send")
        poll_until(lambda: remembered(third.token), 10, "a token remembered after the cut")


# --- idempotency and errors ------------------------------------------------------------------

def test_idempotency_key_same_body_same_answer_other_body_409(client, store):
    body = {"to": "+375291234567", "text": "order 17 shipped"}
    h = {"Idempotency-Key": "order-17"}
    first = client.post("/v1/sms", json=body, headers=h)
    again = client.post("/v1/sms", content=json.dumps(body, indent=4),
                        headers={**h, "Content-Type": "application/json"})
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again.headers.get("idempotent-replayed") == "true"
    _problem(client.post("/v1/sms", json={**body, "text": "other"}, headers=h), 409,
             "Idempotency-Key")
    # an invalid body's answer is kept too, and nothing was queued for it
    bad = client.post("/v1/sms", json={"to": "x", "text": "y"}, headers={"Idempotency-Key": "b"})
    _problem(bad, 422, "to")
    assert client.post("/v1/sms", json={"to": "x", "text": "y"},
                       headers={"Idempotency-Key": "b"}).json() == bad.json()
    batch = {"messages": [{"to": "+375291234567", "text": "a"}]}
    b1 = client.post("/v1/sms/batch", json=batch, headers={"Idempotency-Key": "batch-1"})
    b2 = client.post("/v1/sms/batch", json=batch, headers={"Idempotency-Key": "batch-1"})
    assert b1.json() == b2.json()
    assert len(list(store.r.scan_iter(store.key("msg", "*")))) == 2 * 2  # 2 records + history


def test_errors_are_problem_json_with_the_field(api, client):
    _problem(client.post("/v1/sms", content=b"{not json", headers={
        "Content-Type": "application/json"}), 400, "body")
    _problem(client.post("/v1/sms", content=b"to=1", headers={
        "Content-Type": "application/x-www-form-urlencoded"}), 415)
    _problem(client.post("/v1/sms", json={"to": "+375291234567"}), 422, "text")
    _problem(client.post("/v1/sms", json={"to": "+375291234567", "text": "x",
                                          "validity": "5"}), 422, "validity")
    _problem(client.post("/v1/sms", json={"to": "+375291234567", "text": "x",
                                          "callback_url": "ftp://x"}), 422, "callback_url")
    _problem(client.post("/v1/sms", json={"to": "+375291234567", "text": "x",
                                          "account": "nope"}), 422, "account")
    _problem(client.post("/v1/sms", json=[1, 2]), 422)
    _problem(client.post("/v1/sms", json={"to": "+375291234567", "text": "x" * 70_000}), 413)
    _problem(client.post("/v1/sms/batch", json={"messages": []}), 422, "messages")
    _problem(client.get("/v1/nothing"), 404)
    _problem(client.delete("/v1/sms"), 405)


def test_oversized_body_without_content_length_is_413(api, client):
    def chunks():
        for _ in range(100):
            yield b"x" * 1024

    r = client.post("/v1/sms", content=chunks(), headers={"Content-Type": "application/json"})
    _problem(r, 413)


# --- callbacks out ---------------------------------------------------------------------------

def test_callbacks_in_order_signed_retried_and_none_lost_across_a_restart(
        client, store, api_settings, start_worker, token, tokens, receiver):
    from producers.http.callbacks import Backoff, Dispatcher

    tokens.set_private_callbacks("shop", True)  # the receiver is on this host

    receiver.failures_left = 2  # the first two POSTs fail: retried, order kept
    start_worker(threads=4)
    ids = [client.post("/v1/sms", json={"to": f"+37529300000{i}", "text": f"cb {i}",
                                        "callback_url": receiver.url}).json()["id"]
           for i in range(3)]
    plain = client.post("/v1/sms", json={"to": "+375293000009", "text": "no callback"}).json()
    wait_final(store, [*ids, plain["id"]])
    # the dispatcher was not running while all this happened: nothing may be lost
    d = Dispatcher(api_settings, backoff=Backoff(first_s=0.1, max_s=0.5), threads=4)
    t = d.start_thread()
    try:
        poll_until(lambda: all(len(receiver.statuses(i)) == 3 for i in ids), 30, "callbacks")
    finally:
        d.stop()
        t.join(10)
    for i in ids:
        assert receiver.statuses(i) == ["queued", "submitted", "delivered"]
    assert receiver.statuses(plain["id"]) == []
    for rec in receiver.received:
        sig = rec["headers"]["X-Gonets-Signature"]
        assert verify(token.callback_secret, rec["body"], sig)
        assert not verify("wrong secret", rec["body"], sig)
        assert rec["headers"]["X-Gonets-Event-Id"] == rec["json"]["event_id"]
    # a second dispatcher (a restart) sends nothing again
    n = len(receiver.received)
    d2 = Dispatcher(api_settings, threads=2)
    t2 = d2.start_thread()
    msg = client.post("/v1/sms", json={"to": "+375293000005", "text": "after restart",
                                       "callback_url": receiver.url}).json()["id"]
    try:
        poll_until(lambda: receiver.statuses(msg) == ["queued", "submitted", "delivered"], 30,
                 "callbacks after restart")
    finally:
        d2.stop()
        t2.join(10)
    assert len(receiver.received) == n + 3


def test_a_callback_failing_past_the_give_up_time_is_dropped_and_the_next_goes(
        client, store, api_settings, tokens, receiver):
    from producers.http.callbacks import Backoff, Dispatcher

    tokens.set_private_callbacks("shop", True)  # the receiver is on this host

    receiver.failures_left = 10**6
    msg = client.post("/v1/sms", json={"to": "+375293000001", "text": "x",
                                       "callback_url": receiver.url}).json()["id"]
    d = Dispatcher(api_settings, backoff=Backoff(first_s=0.05, max_s=0.1, give_up_s=0.5))
    t = d.start_thread()
    try:
        poll_until(lambda: d.dropped == 1, 20, "the queued callback to be given up")
        receiver.failures_left = 0
        store.transition(msg, "submitted")
        poll_until(lambda: receiver.statuses(msg) == ["submitted"], 20, "the next callback")
    finally:
        d.stop()
        t.join(10)


# --- SMSC webhook in -------------------------------------------------------------------------

def test_smsc_status_callback_moves_the_message(api, client, store, smsc, start_worker):
    control(smsc.urls[0], progress_s=[60, 120])  # SMSC itself would say "delivered" much later
    start_worker(threads=2)
    msg = client.post("/v1/sms", json={"to": "+375294000001", "text": "hook"}).json()["id"]
    poll_until(lambda: store.get(msg)["status"] == "submitted", 20, "submitted")
    seq = store.get(msg)["provider_id"]
    hook = f"{api.url}/v1/webhooks/smsc/smsc/{CALLBACK_SECRET}"
    with httpx.Client() as c:
        _problem(c.post(f"{api.url}/v1/webhooks/smsc/smsc/wrong", data={"id": seq,
                                                                        "status": "1"}), 404)
        _problem(c.post(f"{api.url}/v1/webhooks/smsc/nope/{CALLBACK_SECRET}",
                        data={"id": seq, "status": "1"}), 404)
        _problem(c.post(hook, data={"id": seq, "status": "delivered"}), 422, "status")
        _problem(c.post(hook, data={"id": seq, "status": "1", "phone": "375290000000"}), 422,
                 "phone")
        assert store.get(msg)["status"] == "submitted"
        r = c.post(hook, data={"id": "999999", "status": "1"})
        assert r.status_code == 200  # unknown ids are acknowledged and ignored
        r = c.post(hook, data={"id": seq, "status": "20", "err": "13",
                               "phone": "375294000001"})
        assert r.status_code == 200 and r.text == "OK"
        assert c.post(hook, data={"id": seq, "status": "1"}).status_code == 200
    rec = store.get(msg)
    assert rec["status"] == "failed"  # final; the late "1" did not change it
    assert rec["provider_status"] == "20" and rec["error_code"] == "13"


@hsettings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_smsc_callback_parser_never_crashes(body):
    try:
        msg_id, status, _err, _phone = parse_callback(body)
    except ApiError as exc:
        assert exc.status == 422 and exc.field
    else:
        assert msg_id.isascii() and msg_id.isdigit() and isinstance(status, int)


@hsettings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(["id", "status", "err", "phone", "x"]),
                       st.text(max_size=12), max_size=5))
def test_smsc_callback_parser_on_forms(form):
    from urllib.parse import urlencode

    try:
        msg_id, status, err, _phone = parse_callback(urlencode(form).encode())
    except ApiError as exc:
        assert exc.status == 422
    else:  # only ASCII digits are digits ("²" passes str.isdigit())
        assert msg_id.isascii() and msg_id.isdigit() and isinstance(status, int)
        assert err is None or err.lstrip("-").isascii()


@pytest.mark.parametrize("form", [{"id": "12\u00b2", "status": "1"},
                                  {"id": "12", "status": "\u0661"},
                                  {"id": "12", "status": "1", "err": "\u00b2"}])
def test_smsc_callback_with_non_ascii_digits_is_refused(form):
    from urllib.parse import urlencode

    with pytest.raises(ApiError) as err:
        parse_callback(urlencode(form).encode())
    assert err.value.status == 422


# --- the OpenAPI document --------------------------------------------------------------------

def test_served_openapi_equals_the_checked_in_file(api):
    served = httpx.get(f"{api.url}/openapi.json").json()
    assert served == json.loads((ROOT / "openapi.json").read_text(encoding="utf-8")), \
        "regenerate: python -m producers.http.openapi > openapi.json"


def test_token_cli_create_list_revoke(api, gonets_env):
    import subprocess
    import sys

    def gonets(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cli.main", "token", *args], env=gonets_env,
                              cwd=ROOT, capture_output=True, text=True, timeout=60)

    made = gonets("create", "--producer", "crm", "--scopes", "read")
    assert made.returncode == 0, made.stderr
    t = json.loads(made.stdout)
    assert t["producer"] == "crm" and t["scopes"] == ["read"] and t["callback_secret"]
    auth = {"Authorization": f"Bearer {t['token']}"}
    assert httpx.get(f"{api.url}/v1/sms", headers=auth).status_code == 200
    listed = gonets("list").stdout
    assert t["id"] in listed and t["token"] not in listed
    assert gonets("create", "--producer", "crm", "--scopes", "root").returncode == 2
    assert gonets("revoke", t["id"]).returncode == 0
    assert httpx.get(f"{api.url}/v1/sms", headers=auth).status_code == 401
    assert gonets("revoke", t["id"]).returncode == 1


# --- consent ---------------------------------------------------------------------------------

def test_consent_put_delete_gates_promotional_sms(api, client, tokens):
    crm = tokens.create("crm", "consent")
    promo = {"to": "+375295550011", "text": "Sale -20%", "kind": "promotional"}
    _problem(client.post("/v1/sms", json=promo), 422, "to")  # no consent yet
    _problem(client.put("/v1/consents/+375295550011", json={"source": "web form"}), 403,
             "scope")  # the shop's token has no consent scope
    with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {crm.token}"}) as c:
        _problem(c.get("/v1/consents/+375295550011"), 404)
        r = c.put("/v1/consents/+375 29 555-00-11", json={"source": "web form"})
        assert r.status_code == 200, r.text
        assert r.json()["granted"] is True and r.json()["phone"] == "+375295550011"
        assert client.post("/v1/sms", json=promo).status_code == 202
        r = c.delete("/v1/consents/+375295550011", params={"source": "STOP reply"})
        assert r.status_code == 200 and r.json()["granted"] is False
        assert [(h["action"], h["source"]) for h in c.get("/v1/consents/+375295550011")
                .json()["history"]] == [("grant", "web form"), ("withdraw", "STOP reply")]
        _problem(client.post("/v1/sms", json=promo), 422, "to")
        _problem(c.put("/v1/consents/12", json={"source": "x"}), 422, "phone")
        _problem(c.put("/v1/consents/+375295550011", json={}), 422, "source")
    # transactional messages need no consent
    assert client.post("/v1/sms", json={**promo, "kind": "transactional"}).status_code == 202


def test_the_dispatcher_waits_for_its_redis_and_makes_a_lost_group_again(
        api_settings, tmp_path, caplog):
    """A dispatcher that starts while Redis is away does not exit (it waits for it), and one
    whose Redis came back without the consumer group (restarted without its data) makes it
    again instead of failing every read for ever."""
    import logging

    import redis as redis_lib

    from core.embedded_redis import RedisServer
    from producers.http.callbacks import GROUP, Dispatcher

    srv = RedisServer(tmp_path / "redis")  # not started yet
    settings = api_settings.model_copy(update={"redis_url": srv.url})
    d = Dispatcher(settings, threads=1)
    caplog.set_level(logging.WARNING, logger="gonets.callbacks")
    t = d.start_thread()
    try:
        poll_until(lambda: "Redis unavailable" in caplog.text, 20, "a failed first try")
        assert t.is_alive()
        srv.start()
        r = redis_lib.Redis.from_url(srv.url, decode_responses=True)
        stream = d.store.events_key

        def has_group() -> bool:
            try:
                return any(g["name"] == GROUP for g in r.xinfo_groups(stream))
            except redis_lib.ResponseError:  # no stream yet
                return False

        poll_until(has_group, 20, "the consumer group once Redis answers")
        r.xgroup_destroy(stream, GROUP)  # what a restart without persistence leaves
        poll_until(has_group, 20, "the consumer group made again")
        assert t.is_alive()
    finally:
        d.stop()
        t.join(10)
        srv.stop()
    assert not t.is_alive()

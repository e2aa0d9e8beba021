"""Tenants are isolated (issue #14, "Isolation and traceability"): duplicate windows and
idempotency keys count per producer, over a real Redis, the HTTP API, the SMSC sandbox and a
real worker."""

from __future__ import annotations

import socket
import subprocess
import sys
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from core.errors import InvalidInput
from producers.http.callbacks import Dispatcher
from producers.http.models import BatchOut
from tests.support import poll_until, wait_final

SAME = {"to": "+375294440000", "text": "Your order 17 has shipped"}


def test_two_producers_sending_the_same_get_their_own_messages_and_callbacks(
        api, client, tokens, store, smsc, start_worker, api_settings, receiver):
    other = tokens.create("other-shop", "send,read")
    for p in ("shop", "other-shop"):  # the receiver is on this host
        tokens.set_private_callbacks(p, True)
    a = client.post("/v1/sms", json={**SAME, "callback_url": receiver.url})
    assert a.status_code == 202 and "gonets-duplicate-of" not in a.headers
    with httpx.Client(base_url=api.url, timeout=30,
                      headers={"Authorization": f"Bearer {other.token}"}) as b_client:
        b = b_client.post("/v1/sms", json={**SAME, "callback_url": receiver.url})
        assert b.status_code == 202 and "gonets-duplicate-of" not in b.headers
        a_id, b_id = a.json()["id"], b.json()["id"]
        assert a_id != b_id  # B never learns A's id
        assert b_client.get(f"/v1/sms/{b_id}").status_code == 200
        # the same idempotency key from two producers binds two messages
        k1 = client.post("/v1/sms", json={"to": "+375294440001", "text": "k",
                                          "idempotency_key": "order-17"}).json()["id"]
        k2 = b_client.post("/v1/sms", json={"to": "+375294440001", "text": "k",
                                            "idempotency_key": "order-17"}).json()["id"]
        assert k1 != k2
    # A's own repeat is a duplicate, and the answer says so
    again = client.post("/v1/sms", json={**SAME, "callback_url": receiver.url})
    assert again.status_code == 202 and again.json()["id"] == a_id
    assert again.headers["gonets-duplicate-of"] == a_id
    batch = client.post("/v1/sms/batch", json={"messages": [
        SAME, {"to": "+375294440002", "text": "new one"}]}).json()
    BatchOut.model_validate(batch)
    assert batch["results"][0] == {"index": 0, "id": a_id, "duplicate_of": a_id}
    assert "duplicate_of" not in batch["results"][1]
    start_worker(threads=4)
    ids = [a_id, b_id, k1, k2, batch["results"][1]["id"]]
    assert set(wait_final(store, ids).values()) == {"delivered"}
    assert smsc.counters["accepted"] == 5  # one copy each, the duplicates none
    d = Dispatcher(api_settings, threads=2)
    t = d.start_thread()
    try:  # B's callbacks arrive, as A's do
        poll_until(lambda: receiver.statuses(b_id) == ["queued", "submitted", "delivered"]
                   and len(receiver.statuses(a_id)) == 3, 30, "both producers' callbacks")
    finally:
        d.stop()
        t.join(10)


def test_python_api_without_a_producer_is_a_tenant_of_its_own(producer):
    none_1 = producer.queue_sms(SAME["to"], SAME["text"])
    shop = producer.queue_sms(SAME["to"], SAME["text"], producer="shop")
    none_2 = producer.queue_sms(SAME["to"], SAME["text"])
    assert not none_1.duplicate and not shop.duplicate and shop.id != none_1.id
    assert none_2.duplicate and none_2.id == none_1.id
    keyed = [producer.queue_sms("+375294440003", f"t{i}", idempotency_key="k", producer=p)
             for i, p in enumerate([None, "shop", "shop", "other"])]
    assert keyed[2].duplicate and keyed[2].id == keyed[1].id
    assert len({q.id for q in keyed}) == 3 and not any(q.duplicate for q in keyed[:2])
    # a producer-less caller cannot reach a producer's key by spelling it out
    spelled = producer.queue_sms("+375294440003", "t", idempotency_key="shop:k")
    assert spelled.id != keyed[1].id and not spelled.duplicate


def test_cli_send_says_a_duplicate_is_one(gonets_env, store):
    def send() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cli.main", "send", "--to", SAME["to"],
                               "--text", SAME["text"]], env=gonets_env, capture_output=True,
                              text=True, timeout=60)

    first, second = send(), send()
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert first.stdout.strip() == second.stdout.strip()  # stdout: the id alone
    assert "duplicate" not in first.stderr
    assert f"duplicate of {first.stdout.strip()}" in second.stderr


# --- callback targets ------------------------------------------------------------------------

REFUSED_TARGETS = [
    "http://127.0.0.1:8080/hook", "http://127.1/hook", "http://2130706433/hook",
    "http://[::1]/hook", "http://[::ffff:127.0.0.1]/hook", "http://[::ffff:10.1.2.3]/hook",
    "http://[64:ff9b::a9fe:a9fe]/hook", "http://10.0.0.5/hook", "http://172.20.1.1/hook",
    "http://192.168.1.10/hook", "http://100.64.3.4/hook", "http://169.254.169.254/latest/",
    "http://[fe80::1]/hook", "http://[fd00:ec2::254]/", "http://100.100.100.200/",
    "http://0.0.0.0/hook", "http://localhost:9000/hook", "http://api.localhost/hook",
    "http://metadata.google.internal/computeMetadata/v1/", "http://payments-svc/hook",
    "https://printer.local/hook",
]


def test_private_callback_targets_are_refused_when_accepted(api, client, tokens, producer,
                                                              store):
    for url in REFUSED_TARGETS:
        r = client.post("/v1/sms", json={"to": "+375294440010", "text": url,
                                         "callback_url": url})
        assert r.status_code == 422, (url, r.text)
        assert r.json()["field"] == "callback_url" and "public address" in r.json()["detail"]
        with pytest.raises(InvalidInput) as err:
            producer.send_sms("+375294440010", url, callback_url=url)
        assert err.value.field == "callback_url"
    assert not list(store.r.scan_iter(store.key("msg", "*")))  # nothing was queued
    ok = client.post("/v1/sms", json={"to": "+375294440010", "text": "public",
                                      "callback_url": "https://hooks.shop.example/gonets"})
    assert ok.status_code == 202
    # the operator allows them for one producer; others stay refused
    tokens.set_private_callbacks("shop", True)
    assert client.post("/v1/sms", json={"to": "+375294440011", "text": "x", "callback_url":
                                        "http://127.0.0.1:8080/hook"}).status_code == 202
    assert producer.queue_sms("+375294440012", "y", callback_url="http://10.0.0.5/h",
                              allow_private_callback=True).id
    other = tokens.create("other-shop", "send")
    r = httpx.post(f"{api.url}/v1/sms", headers={"Authorization": f"Bearer {other.token}"},
                   json={"to": "+375294440013", "text": "z",
                         "callback_url": "http://127.0.0.1:8080/hook"})
    assert r.status_code == 422


def _resolver(table: dict[str, list[str]]):
    def resolve(host: str, port: int, *a: Any, **kw: Any) -> list[Any]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "unknown name")
        return [(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                 (ip, port)) for ip in table[host]]
    return resolve


def test_a_name_resolving_to_a_private_address_is_refused_when_the_dispatcher_connects(
        api, client, tokens, store, api_settings, receiver):
    """DNS is the stand-in here (the dispatcher's resolver seam): a public-looking name that
    resolves to the receiver's loopback address, as a rebinding or internal name would."""
    port = int(receiver.url.rsplit(":", 1)[1].split("/")[0])
    url = f"http://hooks.shop.example:{port}/hook"
    other = tokens.create("lab", "send")
    tokens.set_private_callbacks("lab", True)
    mine = client.post("/v1/sms", json={"to": "+375294440020", "text": "a",
                                        "callback_url": url}).json()["id"]
    mixed = client.post("/v1/sms", json={"to": "+375294440021", "text": "b", "callback_url":
                                         url.replace("hooks.", "mixed.")}).json()["id"]
    lab = httpx.post(f"{api.url}/v1/sms", headers={"Authorization": f"Bearer {other.token}"},
                     json={"to": "+375294440022", "text": "c", "callback_url": url}
                     ).json()["id"]
    resolve = _resolver({"hooks.shop.example": ["127.0.0.1"],
                         "mixed.shop.example": ["93.184.216.34", "::ffff:127.0.0.1"]})
    d = Dispatcher(api_settings, threads=2, resolve=resolve)
    t = d.start_thread()
    try:
        # the allowed producer's callback reaches the checked address, named as in its URL
        poll_until(lambda: receiver.statuses(lab) == ["queued"], 30, "the allowed callback")
        poll_until(lambda: d.refused == 2, 30, "both refusals")
    finally:
        d.stop()
        t.join(10)
    assert receiver.statuses(mine) == [] and receiver.statuses(mixed) == []
    got = next(r for r in receiver.received if r["json"]["id"] == lab)
    assert got["headers"]["Host"] == f"hooks.shop.example:{port}"
    assert not store.r.zcard(store.keys.cb_queue(mine))  # dropped, not retried forever


def test_an_https_callback_goes_to_the_checked_address_under_its_own_name(
        api, client, tokens, api_settings, receiver, tmp_path):
    """The certificate names only hooks.shop.example (no IP): the POST to the pinned address
    succeeds only if TLS is checked against the URL's name (SNI), not the address."""
    import ssl

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=hooks.shop.example",
                    "-addext", "subjectAltName=DNS:hooks.shop.example"],
                   check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    receiver.server.socket = ctx.wrap_socket(receiver.server.socket, server_side=True)
    port = int(receiver.url.rsplit(":", 1)[1].split("/")[0])
    tokens.set_private_callbacks("shop", True)  # the receiver is on this host
    msg = client.post("/v1/sms", json={"to": "+375294440030", "text": "tls", "callback_url":
                                       f"https://hooks.shop.example:{port}/hook"}).json()["id"]
    d = Dispatcher(api_settings, threads=2, verify=ssl.create_default_context(cafile=cert),
                   resolve=_resolver({"hooks.shop.example": ["127.0.0.1"]}))
    t = d.start_thread()
    try:
        poll_until(lambda: receiver.statuses(msg) == ["queued"], 30, "the TLS callback")
    finally:
        d.stop()
        t.join(10)
    assert receiver.received[0]["headers"]["Host"] == f"hooks.shop.example:{port}"


@hsettings(max_examples=300, deadline=None)
@given(host=st.text(min_size=1, max_size=60), scheme=st.sampled_from(["http", "https"]))
def test_callback_url_check_raises_only_invalid_input(host, scheme):
    from producers.validation import check_callback_url

    try:
        check_callback_url(f"{scheme}://{host}/hook")
    except InvalidInput as exc:
        assert exc.field == "callback_url"


def test_payment_idempotency_keys_count_per_producer(pay_settings, payments, hook_socket):
    """The same payment idempotency key from two producers binds two payments (the Python API
    answered producer B with producer A's payment id); over HTTP a key of the documented
    200 characters is taken as it is (the route prefixed the producer before the length check
    and refused it)."""
    from producers.http.app import create_app
    from producers.http.auth import Tokens
    from tests.support import serve_asgi

    def pay(producer: str | None, key: str) -> str:
        return payments.pay_mts_money("375295222222", 700, description="order 7",
                                      idempotency_key=key, producer=producer)

    a = pay("shop", "order-7")
    assert pay("shop", "order-7") == a  # the producer's own repeat: the same payment
    b = pay("other", "order-7")
    none = pay(None, "order-7")
    assert len({a, b, none}) == 3
    assert pay("other", "order-7") == b and pay(None, "order-7") == none
    shop = Tokens(payments.store.r, pay_settings.namespace).create("shop", "pay")
    long_key = "k" * 200
    with serve_asgi(create_app(pay_settings, store=payments.store), hook_socket) as url, \
            httpx.Client(base_url=url, timeout=30,
                         headers={"Authorization": f"Bearer {shop.token}"}) as c:
        body = {"phone": "+375295222222", "amount": 700, "description": "order 8",
                "idempotency_key": long_key}
        first = c.post("/v1/payments/mts-money", json=body)
        assert first.status_code == 202, first.text
        again = c.post("/v1/payments/mts-money", json=body)
        assert again.status_code == 202 and again.json()["id"] == first.json()["id"]
    # the HTTP producer's key and the Python API's same key of the same producer are one
    assert pay("shop", long_key) == first.json()["id"]

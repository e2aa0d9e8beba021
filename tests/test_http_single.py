"""``POST /v1/sms`` under concurrency, over real sockets: single sends that arrive together share
one Redis pipeline (``producers.http.sms.SendGroup``), and each still gets its own answer, its
own errors and its own duplicate verdict; and the wire protocol ``gonets api`` serves with
(``producers.http.wire``) keeps keep-alive, pipelined requests and ``Connection: close`` whole."""

from __future__ import annotations

import json
import socket
from typing import Any

from core.store import Store
from producers.http import sms as sms_routes
from producers.http.auth import NewToken
from producers.sms import Producer
from tests.support import ApiServer


def _request(token: str, body: dict[str, Any], *, close: bool = False) -> bytes:
    raw = json.dumps(body).encode()
    return (b"POST /v1/sms HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer " + token.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(raw)).encode() + b"\r\n" + (b"Connection: close\r\n" if close else b"")
            + b"\r\n" + raw)


def _read_response(f: Any) -> tuple[int, dict[str, str], dict[str, Any]]:
    status = int(f.readline().split()[1])
    headers: dict[str, str] = {}
    while (line := f.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = json.loads(f.read(int(headers["content-length"])))
    return status, headers, body


def _all_at_once(port: int, requests: list[bytes]) -> list[tuple[int, dict[str, str],
                                                                  dict[str, Any]]]:
    """Each request on its own connection, all written before any answer is read (each
    connection answered once first: the server has accepted them all)."""
    socks = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in requests]
    files = [s.makefile("rb") for s in socks]
    try:
        for s in socks:
            s.sendall(b"GET /nowhere HTTP/1.1\r\nHost: t\r\n\r\n")
        for f in files:
            assert _read_response(f)[0] == 404
        for s, req in zip(socks, requests, strict=True):
            s.sendall(req)
        return [_read_response(f) for f in files]
    finally:
        for f in files:
            f.close()
        for s in socks:
            s.close()


def test_single_sends_arriving_together_each_get_their_own_answer(
        api: ApiServer, token: NewToken, store: Store, monkeypatch: Any) -> None:
    producer: Producer = api.app.state.api.producer
    groups: list[int] = []
    execute = producer._execute

    def counted(subs: list[Any]) -> list[Any]:
        groups.append(len(subs))
        return execute(subs)

    monkeypatch.setattr(producer, "_execute", counted)
    monkeypatch.setattr(sms_routes, "BATCH_CHUNK", 8)  # a pass holding more: several calls
    same = {"to": "+375291110000", "text": "same text, same number"}
    for attempt in range(3):  # until the server read several in one pass (nearly always)
        bodies: list[dict[str, Any]] = [
            {"to": f"+37529111{attempt:02d}{i:02d}", "text": f"message {attempt} {i}"}
            for i in range(24)]
        bodies[5] = {"to": "+37529", "text": "too short a number"}
        bodies[9] = {"to": "+375291119999", "text": "ad", "kind": "promotional"}  # no consent
        bodies[12] = bodies[17] = dict(same, text=f"{same['text']} {attempt}")
        answers = _all_at_once(api.port, [_request(token.token, b) for b in bodies])
        ids = {}
        for i, (body, (status, headers, got)) in enumerate(zip(bodies, answers, strict=True)):
            if i == 5:
                assert status == 422 and got["field"] == "to", got
                assert headers["content-type"].startswith("application/problem+json")
                continue
            if i == 9:
                assert status == 422 and "consent" in got["detail"], got
                continue
            assert status == 202, got
            assert headers["location"] == f"/v1/sms/{got['id']}"
            ids[i] = got["id"]
            rec = store.get(got["id"])  # its own message, not a neighbour's
            assert rec["phone"] == body["to"][1:] and rec["text"] == body["text"]
            assert rec["producer"] == "shop"
        # the second of two identical sends queued nothing: it names the first
        assert ids[12] == ids[17]
        dup = [answers[i][1].get("gonets-duplicate-of") for i in (12, 17)]
        assert sorted(dup, key=str) == [ids[12], None] or sorted(dup, key=str) == [None, ids[12]]
        assert len(set(ids.values())) == len(ids) - 1
        if max(groups) > 1:
            break
        groups.clear()
    # several requests did share one script call, never more than a chunk
    assert 1 < max(groups, default=0) <= 8, groups


def test_the_wire_keeps_pipelined_requests_in_order_and_closes_when_asked(
        api: ApiServer, token: NewToken, store: Store) -> None:
    # api is served with producers.http.wire.Protocol, as gonets api is
    with socket.create_connection(("127.0.0.1", api.port), timeout=30) as s:
        texts = [f"pipelined {i}" for i in range(3)]
        s.sendall(b"".join(_request(token.token, {"to": f"+37529222000{i}", "text": t})
                           for i, t in enumerate(texts)))
        s.sendall(_request(token.token, {"to": "+375292220009", "text": "last"},
                           close=True))
        with s.makefile("rb") as f:
            got = [_read_response(f) for _ in range(4)]
            assert f.read() == b""  # closed after the answer, nothing more
    for (status, _, body), text in zip(got, [*texts, "last"], strict=True):
        assert status == 202 and store.get(body["id"])["text"] == text
    assert got[3][1]["connection"] == "close"
    # a large answer, whole
    with socket.create_connection(("127.0.0.1", api.port), timeout=30) as s:
        s.sendall(b"GET /openapi.json HTTP/1.1\r\nHost: t\r\n\r\n")
        with s.makefile("rb") as f:
            status, headers, doc = _read_response(f)
    assert status == 200 and "/v1/sms" in doc["paths"]
    assert int(headers["content-length"]) > 10_000

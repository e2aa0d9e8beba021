"""Issue 8 figures: messages accepted per second through the HTTP API — ``POST /v1/sms/batch``
and single ``POST /v1/sms`` from 16 concurrent clients — beside the Python API's
``send_sms`` in a loop, in the same run, on the same Redis.

The API runs as ``gonets api`` (uvicorn, one process, as ``make run`` starts it) in a
subprocess; accepted means the record is written and the job is on its queue (no worker runs:
this measures intake).  The single sends come from one lean asyncio client (``api_single``
says why not httpx); each figure's note gives the API's CPU per message and the host load.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson

from core.embedded_redis import RedisServer
from core.settings import load_settings
from core.store import Store, redis_client

ROOT = Path(__file__).resolve().parent.parent
N_PY = int(os.environ.get("BENCH_API_PY_N", "3000"))
N_SINGLE = int(os.environ.get("BENCH_API_SINGLE_N", "3000"))
N_BATCH = int(os.environ.get("BENCH_API_BATCH_N", "20000"))
BATCH = 10_000
PY_ROUNDS = int(os.environ.get("BENCH_API_PY_ROUNDS", "3"))
CLIENTS = 16
T = TypeVar("T")


def _result(name: str, value: float, unit: str, *, baseline: float | None = None,
            target: str | None = None, note: str | None = None) -> dict[str, Any]:
    r: dict[str, Any] = {"name": name, "value": round(value, 4), "unit": unit,
                         "baseline": None if baseline is None else round(baseline, 4),
                         "ratio": round(value / baseline, 4) if baseline else None,
                         "target": target}
    if note:
        r["note"] = note
    return r


def _median(runs: list[T]) -> T:
    """The median run by its first figure (a rate)."""
    return sorted(runs, key=lambda r: r[0] if isinstance(r, tuple) else r)[len(runs) // 2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(d: Path) -> Path:
    cfg = d / "bench.toml"
    cfg.write_text("""
default_account = "smsc"
[accounts.smsc]
provider = "smsc_http"
base_urls = ["http://127.0.0.1:9"]
credentials = { login = "env:BENCH_SMSC_LOGIN", password = "env:BENCH_SMSC_PASSWORD" }
default_sender = "Gonets"
""")
    return cfg


def _phone(i: int) -> str:
    return f"+37529{1000000 + i % 8999999}"


class Commands:
    """Commands Redis received from clients (not those a script ran) while the block runs,
    read with MONITOR; ``INFO commandstats`` around it gives every command run, scripts' too."""

    END = "gonets-bench-end"

    def __init__(self, url: str) -> None:
        self.r = redis_client(url)
        self.top = 0
        self.all = 0

    def __enter__(self) -> Commands:
        self._stats = self._total()
        ready = threading.Event()
        self._t = threading.Thread(target=self._watch, args=(ready,), daemon=True)
        self._t.start()
        ready.wait(10)
        return self

    def _total(self) -> int:
        return sum(int(v["calls"]) for v in self.r.info("commandstats").values())

    def _watch(self, ready: threading.Event) -> None:
        with self.r.monitor() as m:
            ready.set()
            for cmd in m.listen():
                if self.END in cmd.get("command", ""):
                    return
                if cmd.get("client_type") != "lua":
                    self.top += 1

    def __exit__(self, *exc: object) -> None:
        self.r.echo(self.END)
        self._t.join(30)
        self.all = self._total() - self._stats - 2  # the INFO and the ECHO
        self.r.close()


def _producer(env: dict[str, str]) -> Any:
    from core.broker import build_broker
    from producers import Producer

    settings = load_settings(env)
    return Producer(settings, store=Store.from_settings(settings), broker=build_broker(settings))


def _redis_cpu_s(env: dict[str, str]) -> float:
    """The Redis server's CPU seconds so far (user + system, ``INFO cpu``)."""
    r = redis_client(env["GONETS_REDIS_URL"])
    cpu = r.info("cpu")
    r.close()
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def python_send(env: dict[str, str], n: int) -> tuple[float, float, float]:
    """send_sms in a loop: msg/s, this process's and the Redis server's CPU µs per message."""
    p = _producer(env)
    p.send_sms(_phone(n), "warm-up")  # the script cache, the connection
    r0 = _redis_cpu_s(env)
    t0, c0 = time.monotonic(), time.process_time()
    for i in range(n):
        p.send_sms(_phone(i), f"python {i}")
    rate = n / (time.monotonic() - t0)
    cpu_us = (time.process_time() - c0) / n * 1e6
    redis_us = (_redis_cpu_s(env) - r0) / n * 1e6
    p.broker.close()
    return rate, cpu_us, redis_us


def python_send_before(env: dict[str, str], n: int) -> float:
    """Baseline: the producer path as it was before issue 15, one Redis call per step
    (duplicate claim, record script, dramatiq's enqueue script), the same checks."""
    from core.broker import enqueue
    from core.contracts import send_actor, send_queue
    from core.timing import now_ms
    from producers import duplicates

    p = _producer(env)
    t0 = time.monotonic()
    for i in range(n):
        d = p.check(_phone(i), f"before {i}")
        claim = duplicates.claim(p.store, d.account, d.producer, d.phone, d.dup_sender, d.text,
                                 scope=d.scope)
        if claim is not None:
            p.store.locks.take(claim[0], d.msg_id, claim[1] / 1000)
        p.store.create(d.msg_id, d.fields, next_check_ms=now_ms() + 600_000)
        enqueue(p.broker, send_queue(d.account.name, d.lane), send_actor(d.lane), d.msg_id)
    rate = n / (time.monotonic() - t0)
    p.broker.close()
    return rate


def python_send_many(env: dict[str, str], n: int) -> tuple[float, float, float]:
    """send_many in batches: msg/s, this process's and the Redis server's CPU µs per
    message."""
    p = _producer(env)
    items = [{"to": _phone(i), "text": f"many {i}"} for i in range(n)]
    r0 = _redis_cpu_s(env)
    t0, c0 = time.monotonic(), time.process_time()
    for k in range(0, n, BATCH):
        got = p.send_many(items[k:k + BATCH])
        if any(isinstance(x, Exception) for x in got):
            raise RuntimeError(f"send_many refused items: {got[:3]}")
    rate = n / (time.monotonic() - t0)
    cpu_us = (time.process_time() - c0) / n * 1e6
    redis_us = (_redis_cpu_s(env) - r0) / n * 1e6
    p.broker.close()
    return rate, cpu_us, redis_us


def roundtrips(env: dict[str, str], url: str, n: int) -> tuple[float, float]:
    """Commands sent per ``send_sms`` (each its own round trip) and every command run per
    message, scripts' included, over ``n`` sends after a warm-up."""
    p = _producer(env)
    p.send_sms(_phone(0), "warm-up")
    with Commands(url) as c:
        for i in range(n):
            p.send_sms(_phone(i + 1), f"counted {i}")
    p.broker.close()
    return c.top / n, c.all / n


def api_single(port: int, token: str, n: int, tag: str = "single",
               ids: list[str] | None = None) -> tuple[float, float]:
    """``POST /v1/sms`` from ``CLIENTS`` keep-alive HTTP/1.1 connections at once, one request
    in flight on each: (messages/s, this client's CPU ms per message); the ids answered are
    appended to ``ids``.

    The client is one asyncio loop writing requests encoded beforehand and reading each
    answer's status line, headers and body (~0.1 ms of CPU a request): on a 2-core host a
    client that costs as much as the server (httpx in 16 threads: ~1 ms a request) measures
    itself as much as the API."""
    import asyncio

    import uvloop

    per = n // CLIENTS
    errors: list[bytes] = []

    def request(i: int) -> bytes:
        body = json.dumps({"to": _phone(i), "text": f"{tag} {i}"}).encode()
        return (b"POST /v1/sms HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer "
                + token.encode() + b"\r\nContent-Type: application/json\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)

    requests = [[request(c * per + i) for i in range(per)] for c in range(CLIENTS)]

    async def client(mine: list[bytes]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for req in mine:
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = await reader.readexactly(length)
            if head[9:12] != b"202":
                errors.append(head + body)
            elif ids is not None:
                ids.append(orjson.loads(body)["id"])
        writer.close()
        await writer.wait_closed()

    async def all_clients() -> None:
        await asyncio.gather(*(client(mine) for mine in requests))

    cpu0, t0 = time.process_time(), time.monotonic()
    uvloop.run(all_clients())
    rate = per * CLIENTS / (time.monotonic() - t0)
    client_ms = (time.process_time() - cpu0) * 1000 / (per * CLIENTS)
    if errors:
        raise RuntimeError(f"{len(errors)} single sends failed, e.g. {errors[0][:300]!r}")
    return rate, client_ms


def api_batch(url: str, token: str, n: int, ids: list[str] | None = None) -> float:
    bodies = []
    for sent in range(0, n, BATCH):
        k = min(BATCH, n - sent)
        bodies.append((k, json.dumps({"messages": [
            {"to": _phone(sent + i), "text": f"batch {sent + i}"} for i in range(k)]})))
    t0 = time.monotonic()
    with httpx.Client(base_url=url, timeout=300,
                      headers={"Authorization": f"Bearer {token}",
                               "Content-Type": "application/json"}) as c:
        for k, body in bodies:
            r = c.post("/v1/sms/batch", content=body)
            r.raise_for_status()
            got = r.json()
            if got["accepted"] != k:
                raise RuntimeError(f"batch accepted {got['accepted']} of {k}")
            if ids is not None:
                ids.extend(item["id"] for item in got["results"])
    return n / (time.monotonic() - t0)


class Accepted:
    """What the API accepted around a block: the producer's index entries and the jobs on
    its queue (no worker runs), against the ids it answered: lost and doubled messages."""

    def __init__(self, env: dict[str, str], producer: str) -> None:
        from core.contracts import send_queue
        from core.keys import Keys

        settings = load_settings(env)
        self.store = Store.from_settings(settings)
        self.producer = producer
        self.queue = f"{Keys(settings.namespace).broker_namespace()}:{send_queue('smsc', 'bulk')}"
        self.ids: list[str] = []

    def _counts(self) -> tuple[int, int]:
        from producers.index import ProducerIndex

        return (ProducerIndex(self.store).size(self.producer),
                int(self.store.r.llen(self.queue)))

    def __enter__(self) -> Accepted:
        self.before = self._counts()
        return self

    def __exit__(self, *exc: object) -> None:
        indexed, queued = (a - b for a, b in zip(self._counts(), self.before, strict=True))
        distinct = len(set(self.ids))
        #: answered but not written (or not queued), and written or queued more than answered
        self.lost = max(0, distinct - min(indexed, queued))
        self.doubled = len(self.ids) - distinct + max(0, max(indexed, queued) - distinct)
        self.store.close()

    def note(self) -> str:
        return f"lost {self.lost}, doubled {self.doubled} (ids answered against index and queue)"


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process and its children so far."""
    import psutil

    total = 0.0
    try:
        p = psutil.Process(pid)
        procs = [p, *p.children(recursive=True)]
    except psutil.Error:
        return total
    for q in procs:
        try:
            t = q.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
    return total


def run() -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="gonets-bench-api-") as tmp:
        d = Path(tmp)
        srv = RedisServer(d / "redis").start()
        api: subprocess.Popen[bytes] | None = None
        try:
            env = {k: v for k, v in os.environ.items() if not k.startswith("GONETS_")}
            env.update(GONETS_REDIS_URL=srv.url, GONETS_CONFIG=str(_config(d)),
                       PYTHONPATH=str(ROOT), BENCH_SMSC_LOGIN="x", BENCH_SMSC_PASSWORD="y")
            # each Python figure and its baseline in turn, PY_ROUNDS times: the median run of
            # each (a shared host's load comes and goes within seconds)
            befores, sends, manys = [], [], []
            py_load = os.getloadavg()[0]
            for _ in range(PY_ROUNDS):
                befores.append(python_send_before(env, N_PY))
                redis_client(srv.url).flushall()
                sends.append(python_send(env, N_PY))
                redis_client(srv.url).flushall()
                manys.append(python_send_many(env, N_BATCH))
                redis_client(srv.url).flushall()
            many_load = os.getloadavg()[0]
            before = _median(befores)
            py_rate, py_cpu, py_redis = _median(sends)
            many, many_cpu, many_redis = _median(manys)
            per_send, run_per_send = roundtrips(env, srv.url, 500)
            redis_client(srv.url).flushall()

            from producers.http.auth import Tokens

            token = Tokens(redis_client(srv.url)).create("bench", "send,read").token
            port = _free_port()
            log = open(d / "api.log", "wb")
            api = subprocess.Popen([sys.executable, "-m", "cli.main", "api", "--port",
                                    str(port)], env=env, cwd=ROOT, stdout=log,
                                   stderr=subprocess.STDOUT)
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if api.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("gonets api did not start: "
                                       + (d / "api.log").read_text(errors="replace")[-2000:])
                time.sleep(0.1)
            api_single(port, token, 10 * CLIENTS, "warm-up")  # connections, the token
            load_single = os.getloadavg()[0]
            cpu0 = tree_cpu_s(api.pid)
            with Accepted(env, "bench") as single_count:
                single, client_ms = api_single(port, token, N_SINGLE, ids=single_count.ids)
            single_ms = (tree_cpu_s(api.pid) - cpu0) * 1000 / (N_SINGLE // CLIENTS * CLIENTS)
            load_batch = os.getloadavg()[0]
            cpu0 = tree_cpu_s(api.pid)
            with Accepted(env, "bench") as batch_count:
                batch = api_batch(url, token, N_BATCH, ids=batch_count.ids)
            batch_ms = (tree_cpu_s(api.pid) - cpu0) * 1000 / N_BATCH
        finally:
            if api is not None:
                api.terminate()
                try:
                    api.wait(15)
                except subprocess.TimeoutExpired:
                    api.kill()
                    api.wait()
            srv.stop()
    return [
        _result("python_send_msgs_per_s", py_rate, "msg/s", baseline=before, target=">= 3000",
                note=f"Producer.send_sms in a loop, one thread, {N_PY} messages, median of "
                     f"{PY_ROUNDS} runs, each after a run of its baseline, "
                     f"{py_cpu:.0f} CPU-µs per message (Redis: {py_redis:.0f}); baseline: the "
                     f"pre-#15 path (a Redis call per step), same checks, same run; host load "
                     f"{py_load:.1f}"),
        _result("python_send_many_msgs_per_s", many, "msg/s", baseline=py_rate,
                target=">= 10000",
                note=f"Producer.send_many, batches of {BATCH}, {N_BATCH} messages, median of "
                     f"{PY_ROUNDS} runs, "
                     f"{many_cpu:.0f} CPU-µs per message (Redis: {many_redis:.0f}; the two run "
                     f"at once on a 2-core host: a chunk is checked while Redis runs the one "
                     f"before); baseline: send_sms in a loop; host load {many_load:.1f}"),
        _result("redis_roundtrips_per_send", per_send, "calls", baseline=4.0, target="<= 2",
                note=f"commands sent per send_sms (MONITOR); {run_per_send:.1f} commands run "
                     "per message inside the script (INFO commandstats); baseline: the "
                     "pre-#15 path's dup SET NX + record script + enqueue script + index ZADD"),
        _result("api_single_msgs_per_s", single, "msg/s", baseline=py_rate, target=">= 1000",
                note=f"POST /v1/sms, one SMS a request, {CLIENTS} keep-alive connections at "
                     f"once, {N_SINGLE} messages; gonets api as make run starts it (1 "
                     f"process); API CPU {single_ms:.2f} ms/msg, client CPU {client_ms:.2f} "
                     f"ms/msg (one asyncio loop); host load {load_single:.1f}; "
                     f"{single_count.note()}; baseline: send_sms in a loop"),
        _result("api_batch_msgs_per_s", batch, "msg/s", baseline=py_rate, target=">= 5000",
                note=f"POST /v1/sms/batch of {BATCH}, {N_BATCH} messages, bodies encoded "
                     f"beforehand; API CPU {batch_ms:.3f} ms/msg; host load {load_batch:.1f}; "
                     f"{batch_count.note()}; baseline: send_sms in a loop"),
    ]


if __name__ == "__main__":
    for r in run():
        print(r)

"""Issue 6 figures: how quickly the bePaid webhook receiver answers (it must answer bePaid at
once), beside the same uvicorn serving a route that does nothing; and how long a payment
takes from ``pay_mts_money`` to ``pending`` through a real payments worker and the bePaid
sandbox, beside one payment request made directly with httpx."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.common import ROOT, Worker, base_env, redis_server, result, sandbox_process
from core.broker import build_broker
from core.payment_store import PaymentStore
from core.payments import PaymentStatus, Transaction
from core.settings import load_settings
from core.store import Store, redis_client

N = int(os.environ.get("BENCH_PAYMENTS_N", "400"))
PAYMENTS = int(os.environ.get("BENCH_PAYMENTS_E2E_N", "60"))
SHOP, SECRET = "361", "sandbox-secret-key"
CREDS = {"BENCH_BEPAID_SHOP": SHOP, "BENCH_BEPAID_SECRET": SECRET}
BASELINE_APP = """
import sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
async def ok(request):
    await request.body()
    return JSONResponse({"status": "ok"})
uvicorn.run(Starlette(routes=[Route("/v1/webhooks/bepaid/{account}", ok, methods=["POST"])]),
            host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(d: Path, bepaid_url: str, hook_url: str) -> Path:
    cfg = d / "bench.toml"
    cfg.write_text(f"""
[accounts.bepaid]
provider = "bepaid"
base_urls = ["{bepaid_url}"]
credentials = {{ shop_id = "env:BENCH_BEPAID_SHOP", secret_key = "env:BENCH_BEPAID_SECRET" }}
[accounts.bepaid.options]
test = true
return_url = "https://shop.example/back"
notification_url = "{hook_url}/v1/webhooks/bepaid/bepaid"
""")
    return cfg


def _serve(cmd: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    p = subprocess.Popen(cmd, env=env, cwd=ROOT)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return p
        except OSError:
            if p.poll() is not None or time.monotonic() > deadline:
                p.kill()
                raise RuntimeError(f"{cmd} did not start") from None
            time.sleep(0.05)


def _stop(p: subprocess.Popen[bytes]) -> None:
    p.terminate()
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def _post_all(url: str, bodies: list[dict[str, Any]]) -> list[float]:
    out = []
    with httpx.Client(auth=(SHOP, SECRET), timeout=10) as c:
        c.post(url, json=bodies[0])  # warm the connection
        for b in bodies:
            t0 = time.perf_counter()
            r = c.post(url, json=b)
            out.append((time.perf_counter() - t0) * 1000)
            if r.status_code not in (200,):
                raise RuntimeError(f"webhook answered {r.status_code}: {r.text}")
    return out


def _p(xs: list[float], q: float) -> float:
    return statistics.quantiles(xs, n=100)[int(q) - 1]


def run() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    with redis_server() as rs, tempfile.TemporaryDirectory() as d, \
            sandbox_process("sandbox.bepaid") as (_, info):
        hook_port = _free_port()
        hook_url = f"http://127.0.0.1:{hook_port}"
        cfg = _config(Path(d), info["bepaid"], hook_url)
        env = base_env(rs.url, cfg, **CREDS)
        os.environ.update(CREDS)
        settings = load_settings(env)
        ps = PaymentStore(Store(redis_client(rs.url)))

        # --- webhook latency: N notifications, each finishing a pending payment
        bodies = []
        for i in range(N):
            pid, uid = uuid.uuid4().hex, str(uuid.uuid4())
            ps.create_payment(pid, {"phone": "375295222222", "amount": 100 + i,
                                    "currency": "BYN"}, account="bepaid", due_ms=0)
            ps.apply(pid, Transaction(uid=uid, status=PaymentStatus.PENDING,
                                      raw_status="pending", tracking_id=pid, amount=100 + i,
                                      currency="BYN"), source="payment", lookup_after_s=300)
            bodies.append({"transaction": {"uid": uid, "status": "successful",
                                           "tracking_id": pid, "amount": 100 + i,
                                           "currency": "BYN", "type": "payment"}})
        recv = _serve([sys.executable, "-m", "cli.main", "pay", "webhooks", "--port",
                       str(hook_port)], env, hook_port)
        try:
            url = f"{hook_url}/v1/webhooks/bepaid/bepaid"
            first = _post_all(url, bodies)
            replay = _post_all(url, bodies)
        finally:
            _stop(recv)
        assert all(ps.payment(b["transaction"]["tracking_id"])["status"] == "successful"
                   for b in bodies)
        base_port = _free_port()
        base = _serve([sys.executable, "-c", BASELINE_APP, str(base_port)], env, base_port)
        try:
            noop = _post_all(f"http://127.0.0.1:{base_port}/v1/webhooks/bepaid/bepaid", bodies)
        finally:
            _stop(base)
        b50 = statistics.median(noop)
        out.append(result("webhook_p50_ms", statistics.median(first), "ms", baseline=b50,
                          target="answers at once: < 20 ms",
                          note=f"{N} notifications finishing pending payments; baseline: "
                               "the same uvicorn with a route that does nothing"))
        out.append(result("webhook_p99_ms", _p(first, 99), "ms", baseline=_p(noop, 99),
                          target="< 50 ms"))
        out.append(result("webhook_replay_p50_ms", statistics.median(replay), "ms",
                          baseline=b50, note="the same notifications again: nothing changes"))

        # --- payment to pending through a real worker, beside one direct request
        from producers.payments import Payments

        worker = Worker(env, "bepaid", 8)
        broker = build_broker(settings)
        try:
            pay = Payments(settings, store=ps.store, broker=broker)
            lat = []
            for i in range(PAYMENTS):
                t0 = time.perf_counter()
                pid = pay.pay_mts_money("375295222222", 500 + i, description=f"bench {i}")
                while ps.payment(pid)["status"] == "queued":
                    time.sleep(0.002)
                lat.append((time.perf_counter() - t0) * 1000)
        finally:
            worker.stop()
            broker.close()
        direct = []
        with httpx.Client(auth=(SHOP, SECRET), timeout=10) as c:
            for _ in range(PAYMENTS):
                body = {"request": {"amount": 100, "currency": "BYN", "description": "d",
                                    "test": True, "tracking_id": uuid.uuid4().hex,
                                    "return_url": "https://x/",
                                    "customer": {"phone": "375295222222"},
                                    "method": {"type": "mts_money",
                                               "confirm_agreement": "already_accepted"}}}
                t0 = time.perf_counter()
                c.post(info["bepaid"] + "/beyag/gateways/mts_money_widget/check_service",
                       json={"request": {"customer": {"phone": "375295222222"}}})
                c.post(info["bepaid"] + "/beyag/payments", json=body)
                direct.append((time.perf_counter() - t0) * 1000)
        out.append(result("payment_to_pending_p50_ms", statistics.median(lat), "ms",
                          baseline=statistics.median(direct),
                          note=f"{PAYMENTS} payments one after another, producer to pending "
                               "(check + payment at the sandbox); baseline: the same two "
                               "requests made directly with httpx"))
    return out

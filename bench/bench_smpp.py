"""Issue 4 figures: submit_sm per second over ONE bind when every answer takes 20 ms (the
sandbox delays each submit_sm_resp), through the Gonets session's window beside a plain smpplib
send-and-wait loop in the same run; and how many submits went unanswered or unaccepted."""

from __future__ import annotations

import os
import time
from typing import Any

from smpplib import client as smpp_client

from bench.common import CONTROL, result, sandbox_process
from workers.smpp.session import Session, SessionConfig

LATENCY_S = 0.02
N_WINDOW = int(os.environ.get("BENCH_SMPP_N", "4000"))
N_PLAIN = 150
WINDOW = 300


def _params(i: int, tag: str) -> dict[str, Any]:
    return dict(source_addr_ton=5, source_addr_npi=0, source_addr="Gonets", dest_addr_ton=1,
                dest_addr_npi=1, destination_addr=str(375290000000 + i),
                short_message=f"{tag} {i}".encode(), data_coding=0, registered_delivery=0)


def plain_loop(host: str, port: int, n: int) -> tuple[float, int]:
    """smpplib as its README shows it: send one submit_sm, read until its answer, repeat."""
    c = smpp_client.Client(host, port, timeout=10, allow_unknown_opt_params=True)
    c.connect()
    c.bind_transceiver(system_id="gonets", password="sandbox")
    ok = 0
    t0 = time.perf_counter()
    for i in range(n):
        pdu = c.send_message(**_params(i, "plain"))
        while True:
            resp = c.read_pdu()
            if resp.command == "submit_sm_resp" and resp.sequence == pdu.sequence:
                ok += resp.status == 0
                break
    elapsed = time.perf_counter() - t0
    c.unbind()
    c.disconnect()
    return n / elapsed, ok


def windowed(host: str, port: int, n: int) -> tuple[float, int]:
    s = Session(SessionConfig(account="bench", hosts=((host, port),),
                              system_id=lambda: "gonets", password=lambda: "sandbox",
                              max_pending=WINDOW), on_deliver=lambda body, command_id: 0).start()
    try:
        if not s.wait_bound(10):
            raise RuntimeError("the session did not bind")
        t0 = time.perf_counter()
        futs = [s.request("submit_sm", _params(i, "window")) for i in range(n)]
        ok = sum(f.result(60).status == 0 for f in futs)
        elapsed = time.perf_counter() - t0
    finally:
        s.close(10)
    return n / elapsed, ok


def run() -> list[dict[str, Any]]:
    with sandbox_process("sandbox.smpp_smsc", "--port", "0", "--backup-port", "0",
                         "--control-port", "0") as (_, info):
        ctl = info["control"]
        CONTROL.post(f"{ctl}/_sandbox/control",
                     json={"resp_delay_s": LATENCY_S, "rate_per_s": 10**9}).raise_for_status()
        host, port = info["primary"].rsplit(":", 1)
        plain_rate, plain_ok = plain_loop(host, int(port), N_PLAIN)
        win_rate, win_ok = windowed(host, int(port), N_WINDOW)
        accepted = CONTROL.get(f"{ctl}/_sandbox/state").json()["counters"]["submits_accepted"]
    lost = (N_PLAIN - plain_ok) + (N_WINDOW - win_ok) + (N_PLAIN + N_WINDOW - accepted)
    return [
        result("smpp_window_speedup", win_rate, "submit/s", baseline=plain_rate,
               target=">= 20x", note=f"one bind, {LATENCY_S * 1000:.0f} ms per answer, "
                                     f"window {WINDOW}, {N_WINDOW} submits"),
        result("smpp_lost", float(lost), "messages", target="0",
               note="submits without an OK answer or not taken by the sandbox"),
    ]

"""SMSC HTTP API sandbox (``/sys/send.php``, ``/sys/status.php``, ``/sys/balance.php``).

Built from shared/providers/smsc-http-api-1c-library.txt (the 1C library: commands, the
``fmt=1`` comma-separated answers ``id,cnt,cost,balance`` / ``id,-error``, ``cost,cnt``,
``status,time,err[,hlr...]``, ``balance`` / ``0,-error``, servers tried in turn) and from
SMSC's public HTTP API reference for what the library leaves out: ``fmt=3`` JSON answers and
the numbered errors of the HTTP API:

    1 bad parameters   2 bad login/password or API key   3 insufficient funds
    4 IP blocked for a while   5 bad date format   6 message forbidden (text or sender)
    7 bad phone number format   8 cannot be delivered to this number
    9 the same request more than once a minute, or too many concurrent requests
    (status.php: 3 = message not found)

Message status codes: -3 not found, -1 waiting, 0 handed to the operator, 1 delivered,
2 read, 3 expired, 4 link clicked, 20 undeliverable, 22 bad number, 23 forbidden,
24 insufficient funds, 25 unavailable number.

Behaviour: a message moves ``-1 → 0 → final`` over ``progress_s`` seconds; the final state is
1 (delivered) unless ``final_status`` says otherwise for that phone.  The balance goes down by
``price`` per part.  Identical send requests within ``duplicate_window_s`` (60 s, SMSC's
minute; settable for fast tests) get error 9.

Control (JSON over HTTP, on every listener):
    POST /_sandbox/control  {"balance": 10.0, "down": [0],
                              "down_mode": "drop"|"503"|"accept_then_503"|"accept_then_drop",
                              "delay_s": 0.0 (answers late; the request is processed at once),
                              "force_error": {"send": [3, 5]} (code, count),
                              "raw_answer": {"send": ["<body>", 1]} (processed as always,
                                  the next N answers replaced by the body as given),
                              "phone_error": {"375...": 7}, "final_status": {"375...": [20, 1]},
                              "progress_s": [0.2, 0.5], "throttle_per_s": 20 | null,
                              "duplicate_window_s": 60, "reset": true}
    ``down`` with ``accept_then_503`` / ``accept_then_drop`` on every listener is a provider
    whose answers *and* lookups are lost: each request is processed, no answer arrives.
    ``throttle_per_s``: sends beyond this many SMS parts in the last second get error 9 (the
    HTTP API's "too many requests"), the way SMSC's speed control answers a client that sends
    too fast.
    GET  /_sandbox/state    counters, balance, messages
    GET  /_sandbox/counters counters and balance only (cheap, for benchmarks)
    GET  /_sandbox/requests the request log (passwords masked)
"""

from __future__ import annotations

import argparse
import json
import math
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from sandbox._http import DROP, MultiPortServer, Request, RequestLog, Response

ERRORS = {
    1: "parameters error",
    2: "invalid login or password",
    3: "insufficient funds",
    4: "IP address temporarily blocked",
    5: "invalid date format",
    6: "message is prohibited (by text or sender name)",
    7: "invalid phone number format",
    8: "message to the specified number cannot be delivered",
    9: "sending more than one identical request per minute",
}
FORMATS = {"flash": 1, "push": 3, "hlr": 4, "bin": 2, "ping": 5, "mms": 6, "mail": 8, "call": 7,
           "viber": 10, "soc": 12}
GSM7 = set("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡"
           "ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
GSM7_EXT = set("^{}\\[~]|€\f")
SENDER = re.compile(r"^[A-Za-z0-9 ._-]{1,11}$|^\d{3,15}$")


def parts_of(text: str) -> int:
    if all(c in GSM7 or c in GSM7_EXT for c in text):
        units = sum(2 if c in GSM7_EXT else 1 for c in text)
        single, multi = 160, 153
    else:
        units = len(text.encode("utf-16-be")) // 2
        single, multi = 70, 67
    return 1 if units <= single else math.ceil(units / multi)


@dataclass
class Message:
    id: int
    phone: str
    text: str
    sender: str
    parts: int
    cost: float
    fmt: int
    created: float
    final: tuple[int, int] = (1, 0)
    params: dict[str, str] = field(default_factory=dict)


class SmscHttpSandbox:
    def __init__(self, *, login: str = "gonets", password: str = "sandbox",
                 apikey: str = "sandbox-key", balance: float = 1000.0, price: float = 1.5,
                 senders: tuple[str, ...] = ("Gonets", "SMSC.RU", "Shop"),
                 progress_s: tuple[float, float] = (0.05, 0.3)) -> None:
        self.login, self.password, self.apikey = login, password, apikey
        self.initial_balance = balance
        self.price = price
        self.senders = set(senders)
        self.default_progress = progress_s
        self.log = RequestLog()
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.balance = self.initial_balance
        self.messages: dict[tuple[str, int], Message] = {}
        self.next_id = 100000
        self.recent: dict[str, float] = {}
        self.recent_order: deque[tuple[float, str]] = deque()
        self.down: set[int] = set()
        self.down_mode = "drop"
        self.delay_s = 0.0
        self.force_error: dict[str, list[int]] = {}
        self.raw_answer: dict[str, list[Any]] = {}
        self.phone_error: dict[str, int] = {}
        self.final_status: dict[str, tuple[int, int]] = {}
        self.progress_s = self.default_progress
        self.throttle_per_s: float | None = None
        self.duplicate_window_s = 60.0
        self.recent_parts: deque[tuple[float, int]] = deque()
        self.counters = {"send": 0, "status": 0, "balance": 0, "cost": 0, "sent_parts": 0,
                         "accepted": 0, "throttled": 0}
        self.log.clear()

    # --- HTTP entry
    def __call__(self, req: Request) -> Response | object:
        if req.path.startswith("/_sandbox/"):
            return self.control(req)
        if req.listener in self.down:
            if self.down_mode.startswith("accept_then_"):
                self._handle(req)  # processed, but the answer is lost
            else:
                self.log.add(listener=req.listener, path=req.path, dropped=True)
            return DROP if self.down_mode.endswith("drop") else Response(503,
                                                                        "Service Unavailable")
        delay = self.delay_s
        resp = self._handle(req)
        if delay:
            # the request is processed at once; only the answer is late (the dangerous case:
            # a client that gives up or dies has still sent the message)
            time.sleep(delay)
        return resp

    def _handle(self, req: Request) -> Response:
        charset = req.form().get("charset", "utf-8").lower()
        enc = {"utf-8": "utf-8", "windows-1251": "cp1251", "koi8-r": "koi8-r",
               "utf-16": "utf-8"}.get(charset, "utf-8")
        p = req.form(enc)
        self.log.add(listener=req.listener, path=req.path,
                     params={k: ("***" if k in ("psw", "apikey") else v) for k, v in p.items()})
        command = req.path.rsplit("/", 1)[-1].removesuffix(".php")
        fmt = p.get("fmt", "0")
        with self.lock:
            if command not in ("send", "status", "balance"):
                return Response(404, "not found")
            if not self._authorised(p):
                return self._error(command, fmt, 2, charset)
            forced = self.force_error.get("cost" if p.get("cost") == "1" else command)
            if forced and forced[1] > 0:
                forced[1] -= 1
                return self._error(command, fmt, forced[0], charset)
            resp = self._command(command, p, fmt, charset)
            raw = self.raw_answer.get(command)
            if raw and raw[1] > 0:  # processed as always; the answer is replaced
                raw[1] -= 1
                return Response(200, str(raw[0]), "application/json")
            return resp

    def _command(self, command: str, p: dict[str, str], fmt: str, charset: str) -> Response:
        if command == "send":
            return self._send(p, fmt, charset)
        if command == "status":
            return self._status(p, fmt, charset)
        self.counters["balance"] += 1
        bal = f"{self.balance:.2f}"
        if fmt == "3":
            return Response.json({"balance": bal, "currency": "RUR"})
        return self._text(bal, charset)

    def _authorised(self, p: dict[str, str]) -> bool:
        if "apikey" in p:
            return p["apikey"] == self.apikey
        return p.get("login") == self.login and p.get("psw") == self.password

    def _text(self, body: str, charset: str) -> Response:
        if charset == "utf-16":
            return Response(200, body.encode("utf-16-be"), "text/plain; charset=utf-16be")
        return Response(200, body.encode("utf-8"), "text/plain; charset=utf-8")

    def _error(self, command: str, fmt: str, code: int, charset: str,
               msg_id: int | None = None) -> Response:
        if fmt == "3":
            body: dict[str, Any] = {"error": ERRORS.get(code, "error"), "error_code": code}
            if msg_id is not None:
                body["id"] = msg_id
            return Response.json(body)
        if fmt == "1":
            return self._text(f"{msg_id or 0},-{code}", charset)
        return self._text(f"ERROR = {code} ({ERRORS.get(code, 'error')})", charset)

    def _send(self, p: dict[str, str], fmt: str, charset: str) -> Response:
        cost_mode = p.get("cost", "0")
        is_cost = cost_mode == "1"
        self.counters["cost" if is_cost else "send"] += 1
        client_id = p.get("id", "")
        if client_id and client_id != "0" and not client_id.isdigit():
            return self._error("send", fmt, 1, charset)
        phones = [x.strip() for x in re.split(r"[,;]", p.get("phones", "")) if x.strip()]
        mes = p.get("mes", "")
        kind = next((k for k in FORMATS if p.get(k) in ("1", "2")), "sms")
        if not phones or (not mes and kind not in ("hlr", "ping")):
            return self._error("send", fmt, 1, charset)
        for ph in phones:
            digits = ph.lstrip("+")
            if not digits.isdigit() or not 10 <= len(digits) <= 15:
                return self._error("send", fmt, 7, charset)
            if digits in self.phone_error:
                return self._error("send", fmt, self.phone_error[digits], charset)
        sender = p.get("sender", "")
        if sender and (sender not in self.senders or not SENDER.match(sender)):
            return self._error("send", fmt, 6, charset)
        for key in ("time",):
            val = p.get(key)
            if val and not re.match(r"^(\d{10}|\d{1,2}-\d{1,2}|0\d{9,10}|\+\d{1,5})$", val):
                return self._error("send", fmt, 5, charset)
        valid = p.get("valid")
        if valid and not re.match(r"^(\d{1,2}:\d{2}|\d{1,2})$", valid):
            return self._error("send", fmt, 1, charset)
        parts = 1 if kind in ("hlr", "ping") else parts_of(mes)
        if p.get("maxsms") and parts > int(p["maxsms"] or 0):
            return self._error("send", fmt, 1, charset)
        cost = round(parts * self.price * len(phones), 2)
        if is_cost:
            if fmt == "3":
                return Response.json({"cost": f"{cost:.2f}", "cnt": parts * len(phones)})
            return self._text(f"{cost:.2f},{parts * len(phones)}", charset)
        now = time.time()
        fingerprint = json.dumps({k: v for k, v in sorted(p.items())
                                  if k not in ("psw", "apikey", "login")})
        window = self.duplicate_window_s
        while self.recent_order and now - self.recent_order[0][0] >= window:
            _, old = self.recent_order.popleft()
            if now - self.recent.get(old, 0) >= window:
                self.recent.pop(old, None)
        if fingerprint in self.recent:
            return self._error("send", fmt, 9, charset)
        if cost > self.balance:
            return self._error("send", fmt, 3, charset)
        if self.throttle_per_s is not None:
            while self.recent_parts and now - self.recent_parts[0][0] >= 1.0:
                self.recent_parts.popleft()
            if sum(n for _, n in self.recent_parts) + parts > self.throttle_per_s:
                self.counters["throttled"] += 1
                return self._error("send", fmt, 9, charset)
            self.recent_parts.append((now, parts * len(phones)))
        self.recent[fingerprint] = now
        self.recent_order.append((now, fingerprint))
        if client_id and client_id != "0":
            msg_id = int(client_id)
        else:
            self.next_id += 1
            msg_id = self.next_id
        self.balance = round(self.balance - cost, 2)
        for ph in phones:
            digits = ph.lstrip("+")
            self.messages[(digits, msg_id)] = Message(
                id=msg_id, phone=digits, text=mes, sender=sender, parts=parts,
                cost=parts * self.price, fmt=FORMATS.get(kind, 0), created=now,
                final=self.final_status.get(digits, (1, 0)), params=dict(p))
        self.counters["sent_parts"] += parts * len(phones)
        self.counters["accepted"] += len(phones)
        cnt = parts * len(phones)
        if fmt == "3":
            body: dict[str, Any] = {"id": msg_id, "cnt": cnt}
            if cost_mode in ("2", "3"):
                body["cost"] = f"{cost:.2f}"
            if cost_mode == "3":
                body["balance"] = f"{self.balance:.2f}"
            return Response.json(body)
        if fmt == "1":
            fields = [str(msg_id), str(cnt)]
            if cost_mode in ("2", "3"):
                fields.append(f"{cost:.2f}")
            if cost_mode == "3":
                fields.append(f"{self.balance:.2f}")
            return self._text(",".join(fields), charset)
        return self._text(f"OK - {cnt} SMS, ID - {msg_id}", charset)

    def _state_of(self, m: Message, now: float) -> tuple[int, int, float]:
        to_operator, to_final = self.progress_s
        age = now - m.created
        if age < to_operator:
            return -1, 0, m.created
        if age < to_final:
            return 0, 0, m.created + to_operator
        return m.final[0], m.final[1], m.created + to_final

    def _status(self, p: dict[str, str], fmt: str, charset: str) -> Response:
        self.counters["status"] += 1
        try:
            msg_id = int(p.get("id", ""))
        except ValueError:
            return self._error("status", fmt, 1, charset)
        phone = p.get("phone", "").lstrip("+")
        m = self.messages.get((phone, msg_id))
        if m is None:
            return self._error("status", fmt, 3, charset)
        st, err, ts = self._state_of(m, time.time())
        hlr = m.fmt == 4
        hlr_fields = {"mcc": "257", "mnc": "02", "country": "Belarus", "operator": "MTS",
                      "roaming_country": "", "roaming_operator": "", "imsi": "257021234567890",
                      "msc": "375290000000"}
        if fmt == "3":
            body: dict[str, Any] = {"status": st, "last_timestamp": int(ts),
                                    "last_date": time.strftime("%d.%m.%Y %H:%M:%S",
                                                               time.localtime(ts)),
                                    "err": err}
            if p.get("all") in ("1", "2"):
                body.update(phone=m.phone, cost=f"{m.cost:.2f}", sender_id=m.sender,
                            sms_cnt=m.parts, type=m.fmt)
            if hlr and st == 1:
                body.update({"cn": hlr_fields["country"], "net": hlr_fields["operator"],
                             "rcn": "", "rnet": "", **hlr_fields})
            return Response.json(body)
        fields = [str(st), str(int(ts)), str(err)]
        if hlr and st == 1:
            fields += [hlr_fields[k] for k in ("mcc", "mnc", "country", "operator",
                                               "roaming_country", "roaming_operator",
                                               "imsi", "msc")]
        return self._text(",".join(fields), charset)

    # --- control
    def control(self, req: Request) -> Response:
        if req.path == "/_sandbox/requests":
            return Response.json(self.log.items())
        if req.path == "/_sandbox/counters":
            with self.lock:
                return Response.json({"balance": self.balance, **self.counters})
        if req.path == "/_sandbox/state":
            with self.lock:
                return Response.json({
                    "balance": self.balance, "counters": self.counters,
                    "messages": [{"id": m.id, "phone": m.phone, "parts": m.parts,
                                  "at": m.created,
                                  "sender": m.sender, "format": m.fmt, "params": {
                                      k: v for k, v in m.params.items()
                                      if k not in ("psw", "apikey")}}
                                 for m in self.messages.values()]})
        if req.path == "/_sandbox/control" and req.method == "POST":
            try:
                c = req.json()
            except (ValueError, UnicodeDecodeError):
                return Response(400, "control body must be JSON")
            with self.lock:
                if c.get("reset"):
                    self.reset()
                if "balance" in c:
                    self.balance = float(c["balance"])
                if "down" in c:
                    self.down = set(c["down"])
                if "down_mode" in c:
                    self.down_mode = c["down_mode"]
                if "delay_s" in c:
                    self.delay_s = float(c["delay_s"])
                for k, v in c.get("force_error", {}).items():
                    self.force_error[k] = [int(v[0]), int(v[1])]
                for k, v in c.get("raw_answer", {}).items():
                    self.raw_answer[k] = [str(v[0]), int(v[1])]
                self.phone_error.update({k: int(v) for k, v in c.get("phone_error", {}).items()})
                self.final_status.update({k: (int(v[0]), int(v[1]))
                                          for k, v in c.get("final_status", {}).items()})
                if "throttle_per_s" in c:
                    self.throttle_per_s = (None if c["throttle_per_s"] is None
                                           else float(c["throttle_per_s"]))
                    self.recent_parts.clear()
                if "progress_s" in c:
                    self.progress_s = (float(c["progress_s"][0]), float(c["progress_s"][1]))
                if "duplicate_window_s" in c:
                    self.duplicate_window_s = float(c["duplicate_window_s"])
            return Response.json({"ok": True})
        return Response(404, "unknown sandbox path")


def serve(host: str = "127.0.0.1", ports: list[int] | None = None,
          **kw: Any) -> tuple[SmscHttpSandbox, MultiPortServer]:
    """Start the sandbox on ``ports`` (0 = free port); the first is primary, the rest fallbacks."""
    app = SmscHttpSandbox(**kw)
    server = MultiPortServer(app, host, ports or [0, 0]).start()
    return app, server


def main() -> None:
    ap = argparse.ArgumentParser(description="SMSC HTTP API sandbox")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, action="append", help="repeat for fallback servers")
    ap.add_argument("--balance", type=float, default=1000.0)
    args = ap.parse_args()
    _, server = serve(args.host, args.port or [0, 0], balance=args.balance)
    print(json.dumps({"smsc_http": server.urls()}), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()

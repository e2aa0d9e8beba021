"""MTS Belarus SMS Pro REST API sandbox (OAuth 2.0 client_credentials + ``/sms/v1/messages``).

Built from shared/providers/mts-belarus-sms-pro-and-bitrix.md:

* ``POST /oauth/token`` (form ``grant_type=client_credentials``, ``client_id``,
  ``client_secret``, or the pair as HTTP Basic auth) answers
  ``{"access_token", "token_type": "Bearer", "expires_in": 3600}``; tokens really expire.
* ``POST /sms/v1/messages`` with ``Authorization: Bearer …`` and a JSON body
  ``{"phone", "text", "sender", "validity"}`` (validity in minutes).  A missing, unknown or
  expired token gets HTTP 401.  Otherwise the answer is HTTP 200 **even when the message
  failed**: the body carries each message's own status::

      {"messages": [{"message_id": "…", "phone": "…", "status": "ACCEPTED"}]}
      {"messages": [{"message_id": null, "phone": "…", "status": "ERROR",
                     "error_code": 5, "error_message": "Limit exceeded"}]}

  (the document names the codes but shows no body; this shape is the sandbox's choice.)
  Codes: 1 invalid phone format, 5 limit exceeded, 10 sender name not registered,
  20 insufficient funds.  An absent sender is allowed (the message goes from a number).
* ``GET /sms/v1/messages/{id}/status`` → ``{"message_id", "status"}``; the status is
  ``UNKNOWN`` for ``progress_s`` seconds after the send (and for its first
  ``unknown_polls`` status requests), then ``DELIVERED`` (or what
  ``final_status`` says for that phone: ``EXPIRED``, ``REJECTED``); 404 for an unknown id.

Control (JSON over HTTP):
    POST /_sandbox/control {"reset": true, "balance": 10.0, "token_ttl_s": 3600,
                            "expire_tokens": true,       # every issued token is now invalid
                            "force_401": 1,              # the next N sends get 401
                            "force_code": [5, 2],        # the next N sends fail with this code
                            "phone_code": {"375…": 10},  # sends to this phone fail with code
                            "final_status": {"375…": "EXPIRED"},
                            "fail_5xx": [503, 1],        # the next N requests get this HTTP status
                            "delay_s": 0.0, "progress_s": 0.3, "max_per_s": 0,
                            "unknown_polls": 1,          # each message's first N polls: UNKNOWN
                            "senders": ["Gonets"],
                            "lose_answers": 1,           # the next N sends are processed,
                                                         # then the connection is dropped
                            "answer_shape": "messages" | "code_200" | "code_ok",
                            "code_spelling": "int" | "padded" | "float" | "text",
                            "raw_answer": ["<body>", 1]}  # the next N send answers, as
                                                          # given ({id}: the message's id)
    ``answer_shape`` (the document shows no body, so readers must take any plausible one):
    "messages" as above; "code_200" ``{"code": 200, "message_id": "…"}`` /
    ``{"code": <code>, "message": "…"}``; "code_ok" ``{"code": "OK", "id": "…"}`` /
    ``{"code": "ERROR", "error_code": <code>}``.  ``code_spelling``: 5, "005", 5.0 or "5".
    GET  /_sandbox/state      counters, balance, messages
    GET  /_sandbox/requests   every request received (secrets and tokens masked)
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from sandbox._http import DROP, MultiPortServer, Request, RequestLog, Response

ERRORS = {1: "Invalid phone format", 5: "Limit exceeded", 10: "Sender name not registered",
          20: "Insufficient funds"}
FINAL_STATES = ("DELIVERED", "EXPIRED", "REJECTED")
_STATUS_PATH = re.compile(r"^/sms/v1/messages/([^/]+)/status$")


@dataclass
class Message:
    id: str
    phone: str
    text: str
    sender: str | None
    validity: int
    created: float
    final: str
    polls: int = 0


class MtsRestSandbox:
    def __init__(self, *, client_id: str = "gonets", client_secret: str = "sandbox",
                 senders: tuple[str, ...] = ("Gonets", "MyShop"), balance: float = 1000.0,
                 price: float = 0.05, token_ttl_s: float = 3600.0,
                 progress_s: float = 0.3) -> None:
        self.client_id, self.client_secret = client_id, client_secret
        self.initial = {"senders": set(senders), "balance": balance, "token_ttl_s": token_ttl_s,
                        "progress_s": progress_s}
        self.price = price
        self.log = RequestLog()
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.senders: set[str] = set(self.initial["senders"])
        self.balance = float(self.initial["balance"])
        self.token_ttl_s = float(self.initial["token_ttl_s"])
        self.progress_s = float(self.initial["progress_s"])
        self.tokens: dict[str, float] = {}  # token -> expiry (epoch s)
        self.messages: dict[str, Message] = {}
        self.force_401 = 0
        self.force_code: list[int] = [0, 0]
        self.phone_code: dict[str, int] = {}
        self.final_status: dict[str, str] = {}
        self.fail_5xx: list[int] = [0, 0]
        self.delay_s = 0.0
        self.max_per_s = 0
        self.unknown_polls = 0
        self.answer_shape = "messages"
        self.code_spelling = "int"
        self.raw_answer: list[Any] = ["", 0]
        self.lose_answers = 0
        self.recent_sends: deque[float] = deque()
        self.counters = {"token": 0, "send": 0, "accepted": 0, "status": 0, "unauthorized": 0,
                         "errors": 0}
        self.log.clear()

    # --- HTTP entry
    def __call__(self, req: Request) -> Response | object:
        if req.path.startswith("/_sandbox/"):
            return self.control(req)
        if self.delay_s:
            time.sleep(self.delay_s)
        with self.lock:
            if self.fail_5xx[1] > 0:
                self.fail_5xx[1] -= 1
                self.log.add(path=req.path, method=req.method, http=self.fail_5xx[0])
                return Response(self.fail_5xx[0], "Service temporarily unavailable")
            if req.path == "/oauth/token" and req.method == "POST":
                return self._token(req)
            if req.path == "/sms/v1/messages" and req.method == "POST":
                resp = self._send(req)
                if self.lose_answers > 0:  # taken (or refused), but the answer never leaves
                    self.lose_answers -= 1
                    self.log.add(path=req.path, method=req.method, answer_lost=True)
                    return DROP
                return resp
            m = _STATUS_PATH.match(req.path)
            if m and req.method == "GET":
                return self._status(req, m.group(1))
        self.log.add(path=req.path, method=req.method, http=404)
        return Response.json({"error": "not_found"}, 404)

    def _token(self, req: Request) -> Response:
        self.counters["token"] += 1
        form = req.form()
        cid, secret = form.get("client_id", ""), form.get("client_secret", "")
        auth = req.headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            try:
                cid, _, secret = base64.b64decode(auth[6:]).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                cid, secret = "", ""
        self.log.add(path=req.path, method="POST", client_id=cid,
                     grant_type=form.get("grant_type"))
        if form.get("grant_type") != "client_credentials":
            return Response.json({"error": "unsupported_grant_type"}, 400)
        if cid != self.client_id or secret != self.client_secret:
            return Response.json({"error": "invalid_client"}, 401)
        token = secrets.token_urlsafe(24)
        self.tokens[token] = time.time() + self.token_ttl_s
        return Response.json({"access_token": token, "token_type": "Bearer",
                              "expires_in": int(self.token_ttl_s)
                              if self.token_ttl_s >= 1 else self.token_ttl_s})

    def _authorised(self, req: Request) -> bool:
        auth = req.headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            return False
        exp = self.tokens.get(auth[7:])
        return exp is not None and exp > time.time()

    def _send(self, req: Request) -> Response:
        self.counters["send"] += 1
        try:
            body = req.json()
        except (ValueError, UnicodeDecodeError):
            body = None
        entry: dict[str, Any] = {"path": req.path, "method": "POST",
                                 "token": _mask(req.headers.get("authorization", "")),
                                 "body": body}
        if self.force_401 > 0 or not self._authorised(req):
            self.force_401 = max(0, self.force_401 - 1)
            self.counters["unauthorized"] += 1
            self.log.add(**entry, http=401)
            return Response.json({"error": "invalid_token"}, 401)
        if not isinstance(body, dict) or not isinstance(body.get("text"), str) \
                or not isinstance(body.get("phone"), str):
            self.log.add(**entry, http=400)
            return Response.json({"error": "bad_request",
                                  "error_description": "phone and text are required"}, 400)
        validity = body.get("validity", 1440)
        if isinstance(validity, bool) or not isinstance(validity, int) \
                or not 1 <= validity <= 1440:
            self.log.add(**entry, http=400)
            return Response.json({"error": "bad_request",
                                  "error_description": "validity must be 1..1440 minutes"}, 400)
        phone, sender = body["phone"], body.get("sender")
        code = 0
        now = time.time()
        while self.recent_sends and now - self.recent_sends[0] > 1.0:
            self.recent_sends.popleft()
        if self.force_code[1] > 0:
            self.force_code[1] -= 1
            code = self.force_code[0]
        elif not re.fullmatch(r"\d{10,15}", phone):
            code = 1
        elif phone in self.phone_code:
            code = self.phone_code[phone]
        elif self.max_per_s and len(self.recent_sends) >= self.max_per_s:
            code = 5
        elif sender is not None and sender not in self.senders:
            code = 10
        elif self.balance < self.price:
            code = 20
        if code:
            self.counters["errors"] += 1
            self.log.add(**entry, http=200, error_code=code)
            return self._answer(None, phone, code)
        self.recent_sends.append(now)
        self.balance = round(self.balance - self.price, 4)
        msg_id = secrets.token_hex(8)
        self.messages[msg_id] = Message(msg_id, phone, body["text"], sender, validity, now,
                                        self.final_status.get(phone, "DELIVERED"))
        self.counters["accepted"] += 1
        self.log.add(**entry, http=200, message_id=msg_id)
        return self._answer(msg_id, phone, 0)

    def _answer(self, msg_id: str | None, phone: str, code: int) -> Response:
        """A send's answer in the shape ``answer_shape`` asks for (the document shows none),
        its error code spelled as ``code_spelling`` says; ``raw_answer`` replaces the next
        answers' bodies outright (the message is taken all the same)."""
        if self.raw_answer[1] > 0:
            self.raw_answer[1] -= 1
            return Response(200, str(self.raw_answer[0]).replace("{id}", msg_id or ""),
                            "application/json")
        spelled: Any = {"int": code, "padded": f"{code:03d}", "float": float(code),
                        "text": str(code)}[self.code_spelling]
        if self.answer_shape == "code_200":
            return Response.json({"code": 200, "message_id": msg_id} if msg_id else
                                 {"code": spelled, "message": ERRORS.get(code, "Error")})
        if self.answer_shape == "code_ok":
            return Response.json({"code": "OK", "id": msg_id} if msg_id else
                                 {"code": "ERROR", "error_code": spelled})
        if msg_id:
            return Response.json({"messages": [{"message_id": msg_id, "phone": phone,
                                                "status": "ACCEPTED"}]})
        return Response.json({"messages": [{
            "message_id": None, "phone": phone, "status": "ERROR", "error_code": spelled,
            "error_message": ERRORS.get(code, "Error")}]})

    def _status(self, req: Request, msg_id: str) -> Response:
        self.counters["status"] += 1
        entry = {"path": req.path, "method": "GET",
                 "token": _mask(req.headers.get("authorization", ""))}
        if self.force_401 > 0 or not self._authorised(req):
            self.force_401 = max(0, self.force_401 - 1)
            self.counters["unauthorized"] += 1
            self.log.add(**entry, http=401)
            return Response.json({"error": "invalid_token"}, 401)
        m = self.messages.get(msg_id)
        if m is None:
            self.log.add(**entry, http=404)
            return Response.json({"error": "not_found"}, 404)
        m.polls += 1
        state = ("UNKNOWN" if time.time() - m.created < self.progress_s
                 or m.polls <= self.unknown_polls else m.final)
        self.log.add(**entry, http=200, status=state)
        return Response.json({"message_id": m.id, "status": state})

    # --- control
    def control(self, req: Request) -> Response:
        if req.path == "/_sandbox/requests":
            return Response.json(self.log.items())
        if req.path == "/_sandbox/state":
            with self.lock:
                return Response.json({
                    "balance": self.balance, "counters": self.counters,
                    "live_tokens": sum(1 for e in self.tokens.values() if e > time.time()),
                    "messages": [{"id": m.id, "phone": m.phone, "sender": m.sender,
                                  "validity": m.validity} for m in self.messages.values()]})
        if req.path == "/_sandbox/control" and req.method == "POST":
            try:
                c = req.json()
            except (ValueError, UnicodeDecodeError):
                return Response(400, "control body must be JSON")
            with self.lock:
                if c.get("reset"):
                    self.reset()
                if c.get("expire_tokens"):
                    self.tokens.clear()
                for key in ("balance", "token_ttl_s", "delay_s", "progress_s"):
                    if key in c:
                        setattr(self, key, float(c[key]))
                for key in ("force_401", "max_per_s", "unknown_polls", "lose_answers"):
                    if key in c:
                        setattr(self, key, int(c[key]))
                if "force_code" in c:
                    self.force_code = [int(c["force_code"][0]), int(c["force_code"][1])]
                if "fail_5xx" in c:
                    self.fail_5xx = [int(c["fail_5xx"][0]), int(c["fail_5xx"][1])]
                if "senders" in c:
                    self.senders = set(c["senders"])
                for key in ("answer_shape", "code_spelling"):
                    if key in c:
                        setattr(self, key, str(c[key]))
                if "raw_answer" in c:
                    self.raw_answer = [str(c["raw_answer"][0]), int(c["raw_answer"][1])]
                self.phone_code.update({k: int(v) for k, v in c.get("phone_code", {}).items()})
                self.final_status.update(c.get("final_status", {}))
            return Response.json({"ok": True})
        return Response(404, "unknown sandbox path")


def _mask(auth: str) -> str:
    return auth[:13] + "…" if auth else ""


def serve(host: str = "127.0.0.1", port: int = 0,
          **kw: Any) -> tuple[MtsRestSandbox, MultiPortServer]:
    app = MtsRestSandbox(**kw)
    return app, MultiPortServer(app, host, [port]).start()


def main() -> None:
    ap = argparse.ArgumentParser(description="MTS Belarus SMS Pro REST sandbox")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    _, server = serve(args.host, args.port)
    print(json.dumps({"mts_rest": server.urls()}), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()

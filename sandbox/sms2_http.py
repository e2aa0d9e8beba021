"""SMS2 HTTP gate sandbox, built from shared/providers/sms2-http-gate.md only.

Scripts (GET or POST, form fields in Windows-1251 unless ``enc=utf-8``):
    /sms.cgi              user, pass, phone, message, from, flash
                          -> "Message successfully sent! Message_ID=N" | "Error: …"
    /sms_status2.cgi      user, pass, mess_id -> "Status: unknown|delivered|not_delivered"
                          | "Error: authentication failure" | "Error: no such message"
    /get_credit_info.cgi  user, pass -> "Balance: 5006.75; Overdraft: -10000.00"
    /api_call.cgi         user, pass, function (list_of_bases, add_phone_to_base,
                          add_phone_to_base_batch, is_phone_in_base, get_base,
                          remove_phone_from_base, start_multicast), base, phone, phones,
                          message, from, bases, start_at
    /api.php              MMS, multipart: user, hash (MD5 of the password), phone, subject,
                          text (UTF-8), picture (PNG); 300 KB at most -> "Ok_N" | "Error\\n…"

sms.cgi checks, in the document's words: login/password; ``message`` not empty, no word mixing
Latin and Cyrillic, ``from`` 3–11 Latin letters (or letters and digits) -> ``can't send this
message``; a sender not registered -> ``unsupported sender``; a number that is not 11 digits
starting with 7 -> ``unsupported phone number``; closed prefixes -> ``direction is closed``;
blacklisted numbers; blocked words; the same phone and text again within 60 s (the
document names the error, not its window: ``duplicate_window_s``) -> ``message
duplication``; balance at or below the overdraft -> ``your credit is null``; a switched-off
account -> ``service is switched off``.  A message is ``unknown`` for ``progress_s`` seconds,
then ``delivered`` (or what ``final_status`` says for its phone).

Control (JSON over HTTP):
    POST /_sandbox/control {"reset": true, "balance": 0, "overdraft": 0, "switched_off": true,
                            "closed_prefixes": ["7900"], "blacklist": ["7…"],
                            "blocked_words": ["casino"], "senders": ["Gonets"],
                            "final_status": {"7…": "not_delivered"}, "progress_s": 0.3,
                            "force_error": ["unsupported sender", 1], "force_answer": ["…", 1],
                            "fail_5xx": [502, 1], "delay_s": 0,
                            "lose_answers": 1,        # the next N sends are processed, then
                                                      # the connection is dropped
                            "duplicate_window_s": 60}  # the document names no window
    GET  /_sandbox/state      counters, balance, messages, bases, campaigns, mms
    GET  /_sandbox/requests   every request received (passwords masked)
"""

from __future__ import annotations

import argparse
import email.parser
import email.policy
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from sandbox._http import DROP, MultiPortServer, Request, RequestLog, Response

SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9]{3,11}$")
PHONE = re.compile(r"^7\d{10}$")
MMS_MAX = 300 * 1024


def _mixed(text: str) -> bool:
    for word in re.findall(r"\w+", text):
        if re.search(r"[A-Za-z]", word) and re.search(r"[\u0400-\u04FF]", word):
            return True
    return False


@dataclass
class Message:
    id: int
    phone: str
    text: str
    sender: str
    flash: bool
    created: float
    final: str


class Sms2HttpSandbox:
    def __init__(self, *, user: str = "gonets", password: str = "sandbox",
                 senders: tuple[str, ...] = ("Gonets", "Shop"), balance: float = 500.0,
                 overdraft: float = 0.0, price: float = 2.5, progress_s: float = 0.3) -> None:
        self.user, self.password = user, password
        self.initial = {"senders": set(senders), "balance": balance, "overdraft": overdraft,
                        "progress_s": progress_s}
        self.price = price
        self.log = RequestLog()
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.senders: set[str] = set(self.initial["senders"])
        self.balance = float(self.initial["balance"])
        self.overdraft = float(self.initial["overdraft"])
        self.progress_s = float(self.initial["progress_s"])
        self.switched_off = False
        self.closed_prefixes: list[str] = []
        self.blacklist: set[str] = set()
        self.blocked_words: list[str] = []
        self.final_status: dict[str, str] = {}
        self.force_error: list[Any] = ["", 0]
        self.force_answer: list[Any] = ["", 0]
        self.fail_5xx: list[int] = [0, 0]
        self.delay_s = 0.0
        self.lose_answers = 0
        self.duplicate_window_s = 60.0
        self.next_id = 27460
        self.messages: dict[int, Message] = {}
        self.recent: dict[tuple[str, str], float] = {}
        self.bases: dict[str, dict[str, Any]] = {
            "clients": {"id": "101", "phones": [], "protected": False},
            "vip": {"id": "102", "phones": ["79110000001", "79110000002"], "protected": True},
        }
        self.campaigns: list[dict[str, Any]] = []
        self.mms: list[dict[str, Any]] = []
        self.counters = {"send": 0, "accepted": 0, "status": 0, "credit": 0, "api_call": 0,
                         "mms": 0}
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
                self.log.add(path=req.path, http=self.fail_5xx[0])
                return Response(self.fail_5xx[0], "Bad Gateway")
            if req.path == "/api.php":
                return self._mms(req)
            raw = req.form("latin-1")
            enc = "utf-8" if raw.get("enc", "").lower() in ("utf-8", "utf8") else "cp1251"
            p = req.form(enc)
            self.log.add(path=req.path, params={k: ("***" if k == "pass" else v)
                                                for k, v in p.items()},
                         raw_body=req.body.decode("latin-1"))
            script = req.path.lstrip("/")
            handler = {"sms.cgi": self._send, "sms_status2.cgi": self._status,
                       "get_credit_info.cgi": self._credit, "api_call.cgi": self._api}.get(script)
            if handler is None:
                return Response(404, "Not Found")
            if p.get("user") != self.user or p.get("pass") != self.password:
                return self._text("Error: authentication failure")
            if script == "sms.cgi" and self.force_answer[1] > 0:
                self.force_answer[1] -= 1
                return Response(200, str(self.force_answer[0]).encode("cp1251", "replace"),
                                "text/html; charset=windows-1251")
            resp = handler(p)
            if script == "sms.cgi" and self.lose_answers > 0:
                self.lose_answers -= 1  # taken (or refused), but the answer never leaves
                self.log.add(path=req.path, answer_lost=True)
                return DROP
            return resp

    @staticmethod
    def _text(body: str) -> Response:
        return Response(200, body.encode("cp1251", "replace"), "text/html; charset=windows-1251")

    def _send(self, p: dict[str, str]) -> Response:
        self.counters["send"] += 1
        if self.force_error[1] > 0:
            self.force_error[1] -= 1
            return self._text(f"Error: {self.force_error[0]}")
        if self.switched_off:
            return self._text("Error: service is switched off")
        phone, text, sender = p.get("phone", ""), p.get("message", ""), p.get("from", "")
        if not text or _mixed(text) or len(text) > 268 or not SENDER.match(sender):
            return self._text("Error: can't send this message")
        if sender not in self.senders:
            return self._text("Error: unsupported sender")
        if not PHONE.match(phone):
            return self._text("Error: unsupported phone number")
        if any(phone.startswith(x) for x in self.closed_prefixes):
            return self._text("Error: direction is closed")
        if phone in self.blacklist:
            return self._text("Error: phone blacklisted")
        if any(w.lower() in text.lower() for w in self.blocked_words):
            return self._text("Error: blocked text message")
        now = time.time()
        self.recent = {k: t for k, t in self.recent.items()
                       if now - t < self.duplicate_window_s}
        if (phone, text) in self.recent:
            return self._text("Error: message duplication")
        if self.balance - self.price < self.overdraft:
            return self._text("Error: your credit is null")
        self.recent[(phone, text)] = now
        self.balance = round(self.balance - self.price, 2)
        self.next_id += 1
        self.messages[self.next_id] = Message(self.next_id, phone, text, sender,
                                              p.get("flash") == "1", now,
                                              self.final_status.get(phone, "delivered"))
        self.counters["accepted"] += 1
        return self._text(f"Message successfully sent! Message_ID={self.next_id}")

    def _status(self, p: dict[str, str]) -> Response:
        self.counters["status"] += 1
        try:
            m = self.messages.get(int(p.get("mess_id", "")))
        except ValueError:
            m = None
        if m is None:
            return self._text("Error: no such message")
        state = "unknown" if time.time() - m.created < self.progress_s else m.final
        return self._text(f"Status: {state}")

    def _credit(self, p: dict[str, str]) -> Response:
        self.counters["credit"] += 1
        return self._text(f"Balance: {self.balance:.2f}; Overdraft: {self.overdraft:.2f}")

    def _api(self, p: dict[str, str]) -> Response:
        self.counters["api_call"] += 1
        fn = p.get("function", "")
        if fn == "list_of_bases":
            return self._text(json.dumps([{"base_name": n, "id": b["id"],
                                           "phones_total": str(len(b["phones"]))}
                                          for n, b in self.bases.items()], ensure_ascii=False))
        if fn == "start_multicast":
            names = [n.strip() for n in p.get("bases", "").split(",") if n.strip()]
            text, sender, start_at = p.get("message", ""), p.get("from", ""), p.get("start_at")
            if not names or not text or len(text) > 268 or _mixed(text) \
                    or not SENDER.match(sender) \
                    or (start_at and not re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", start_at)):
                return self._text("Error: wrong function")
            if any(n not in self.bases for n in names):
                return self._text("Error: wrong base")
            self.campaigns.append({"bases": names, "message": text, "from": sender,
                                   "start_at": start_at or time.strftime("%Y-%m-%d %H:%M")})
            return self._text("Success")
        if fn not in ("add_phone_to_base", "add_phone_to_base_batch", "is_phone_in_base",
                      "get_base", "remove_phone_from_base"):
            return self._text("Error: wrong function")
        base = self.bases.get(p.get("base", ""))
        if base is None:
            return self._text("Error: wrong base")
        if fn == "get_base":
            return self._text("\n".join(base["phones"]) or "No phones in base")
        if fn == "add_phone_to_base_batch":
            if base["protected"]:
                return self._text("Error: base is protected")
            ok, errors = 0, []
            for ph in [x.strip() for x in p.get("phones", "").splitlines() if x.strip()]:
                if PHONE.match(ph) and ph not in base["phones"]:
                    base["phones"].append(ph)
                    ok += 1
                else:
                    errors.append(ph)
            listed = ", ".join(f'"{e}"' for e in errors)
            return self._text(f'{{"success"=>{ok}, "errors"=>[{listed}]}}')
        phone = p.get("phone", "")
        if not PHONE.match(phone):
            return self._text("Error: wrong phone number")
        if fn == "is_phone_in_base":
            return self._text("Yes" if phone in base["phones"] else "No")
        if base["protected"]:
            return self._text("Error: base is protected")
        if fn == "add_phone_to_base":
            if phone in base["phones"]:
                return self._text("Error: can't add phone number")
            base["phones"].append(phone)
            return self._text("Success")
        if phone not in base["phones"]:
            return self._text("Error: can't remove phone number")
        base["phones"].remove(phone)
        return self._text("Success")

    def _mms(self, req: Request) -> Response:
        self.counters["mms"] += 1
        fields = _multipart(req)
        size = len(req.body)
        self.log.add(path=req.path, size=size, params={k: (v if isinstance(v, str) else
                                                           f"<{len(v)} bytes>")
                                                       for k, v in fields.items()
                                                       if k != "hash"})
        expected = hashlib.md5(self.password.encode("utf-8")).hexdigest()
        if fields.get("user") != self.user or fields.get("hash") != expected:
            return Response(200, "Error\nauthentication failure")
        phone = fields.get("phone", "")
        if not isinstance(phone, str) or not PHONE.match(phone):
            return Response(200, "Error\nunsupported phone number")
        picture = fields.get("picture", b"")
        if not isinstance(picture, bytes) or not picture.startswith(b"\x89PNG\r\n\x1a\n"):
            return Response(200, "Error\npicture must be a PNG image")
        subject, text = str(fields.get("subject", "")), str(fields.get("text", ""))
        if len(subject.encode()) + len(text.encode()) + len(picture) > MMS_MAX:
            return Response(200, "Error\nmessage is larger than 300 KB")
        if self.balance - self.price < self.overdraft:
            return Response(200, "Error\nyour credit is null")
        self.balance = round(self.balance - self.price, 2)
        self.next_id += 1
        self.mms.append({"id": self.next_id, "phone": phone, "subject": subject, "text": text,
                         "picture_bytes": len(picture)})
        return Response(200, f"Ok_{self.next_id}")

    # --- control
    def control(self, req: Request) -> Response:
        if req.path == "/_sandbox/requests":
            return Response.json(self.log.items())
        if req.path == "/_sandbox/state":
            with self.lock:
                return Response.json({
                    "balance": self.balance, "counters": self.counters,
                    "messages": [{"id": m.id, "phone": m.phone, "text": m.text,
                                  "sender": m.sender, "flash": m.flash}
                                 for m in self.messages.values()],
                    "bases": {n: {"id": b["id"], "phones": b["phones"],
                                  "protected": b["protected"]} for n, b in self.bases.items()},
                    "campaigns": self.campaigns, "mms": self.mms})
        if req.path == "/_sandbox/control" and req.method == "POST":
            try:
                c = req.json()
            except (ValueError, UnicodeDecodeError):
                return Response(400, "control body must be JSON")
            with self.lock:
                if c.get("reset"):
                    self.reset()
                for key in ("balance", "overdraft", "progress_s", "delay_s",
                            "duplicate_window_s"):
                    if key in c:
                        setattr(self, key, float(c[key]))
                if "lose_answers" in c:
                    self.lose_answers = int(c["lose_answers"])
                if "switched_off" in c:
                    self.switched_off = bool(c["switched_off"])
                if "closed_prefixes" in c:
                    self.closed_prefixes = list(c["closed_prefixes"])
                if "blacklist" in c:
                    self.blacklist = set(c["blacklist"])
                if "blocked_words" in c:
                    self.blocked_words = list(c["blocked_words"])
                if "senders" in c:
                    self.senders = set(c["senders"])
                for key in ("force_error", "force_answer"):
                    if key in c:
                        setattr(self, key, [str(c[key][0]), int(c[key][1])])
                if "fail_5xx" in c:
                    self.fail_5xx = [int(c["fail_5xx"][0]), int(c["fail_5xx"][1])]
                self.final_status.update(c.get("final_status", {}))
            return Response.json({"ok": True})
        return Response(404, "unknown sandbox path")


def _multipart(req: Request) -> dict[str, str | bytes]:
    """Fields of a multipart/form-data body (files as bytes); form-encoded bodies too."""
    ctype = req.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        return dict(req.form("utf-8"))
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {ctype}\r\n\r\n".encode("latin-1") + req.body)
    out: dict[str, str | bytes] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload = part.get_payload(decode=True) or b""
        if part.get_filename():
            out[str(name)] = payload
        else:
            out[str(name)] = payload.decode("utf-8", "replace")
    return out


def serve(host: str = "127.0.0.1", port: int = 0,
          **kw: Any) -> tuple[Sms2HttpSandbox, MultiPortServer]:
    app = Sms2HttpSandbox(**kw)
    return app, MultiPortServer(app, host, [port]).start()


def main() -> None:
    ap = argparse.ArgumentParser(description="SMS2 HTTP gate sandbox")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    _, server = serve(args.host, args.port)
    print(json.dumps({"sms2_http": server.urls()}), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()

"""bePaid MTS Money sandbox: check, payment, lookups, notifications, faults on demand.

(Over 400 lines on purpose: it is one stand-in of one provider, whose state, answers, faults
and notification sender belong together; nothing of it is shared with another sandbox.)

Built from shared/providers/bepaid-mts-money.md (the check in API v2 and v3 formats, the
payment answering ``pending`` with a ``uid``, the final-status notification, the test numbers)
and bePaid's APM API for what that document leaves out: the payment endpoint
``POST /beyag/payments``, lookups ``GET /beyag/transactions/<uid>`` and
``GET /beyag/transactions/tracking_id/<tracking_id>`` (``{"transactions": [...]}``), and
validation errors as HTTP 422 ``{"message": ..., "errors": {...}}``.

Test numbers (the document's table):

    375295222222  check: service activated        payment: successful
    375295111111  check: service inactive         payment: failed
    375444111111  check: invalid phone number     payment: invalid phone number (422)
    375290000000  check: MTS, service activated   payment: failed, insufficient funds

Other numbers: 37529…/37533… are MTS with the service active (payment successful); other
375… numbers are not MTS; anything else is invalid.  How the document's examples are read:
v2 ``validation.operator`` null = invalid number, ``other`` = not MTS, ``service_activated``
false = MTS without the service (the fields of the v2 examples, whose captions are swapped
against them); v3 ``F.0202`` "Account ID not found" = not MTS (v2's ``account_not_found``),
``F.0213`` "Not allowed" = MTS without the service (the v3 captions follow the v2 ones' order,
so they are read by meaning too); an invalid number in v3 is a 422 (the document shows no v3
example for it).

A payment is ``pending`` for ``progress_s``, then final; then the notification goes to the
request's ``notification_url`` with HTTP Basic (shop id, secret key), retried on failure after
each of ``webhook_retry_s``.

Control (JSON, ``POST /_sandbox/control``); fault counters are used up one request at a time:
    {"reset": true, "progress_s": 0.3, "api_version_default": 2,
     "fail_before_create": n,    # 503, nothing recorded
     "fail_after_create": n,     # payment recorded, then 500
     "drop_after_create": n,     # payment recorded, then the connection is dropped
     "nested_after_create": n,   # payment recorded, answered with "[" * 100000 (HTTP 200)
     "timeout_after_create": n,  # payment recorded, answer only after "timeout_sleep_s"
     "timeout_sleep_s": 3.0,
     "lookup_fail": n,           # lookups answer 503
     "lose_webhooks": true,      # never send notifications
     "webhook_retry_s": [0.2, 0.5, 1.0],
     "numbers": {"375...": ["active"|"inactive"|"not_mts"|"invalid",
                            "successful"|"failed"|"insufficient"|"invalid"]}}
    GET /_sandbox/state     transactions (by tracking_id), counters, webhook deliveries
    GET /_sandbox/requests  the request log (credentials masked)
"""

from __future__ import annotations

import argparse
import base64
import binascii
import datetime as dt
import hmac
import json
import threading
import time
import uuid
from typing import Any

import httpx

from sandbox._http import DROP, MultiPortServer, Request, RequestLog, Response

CHECK_PATH = "/beyag/gateways/mts_money_widget/check_service"
PAYMENT_PATH = "/beyag/payments"
TX_PREFIX = "/beyag/transactions/"
TRACKING_PREFIX = "/beyag/transactions/tracking_id/"

#: phone -> (check result, payment result)
TEST_NUMBERS: dict[str, tuple[str, str]] = {
    "375295222222": ("active", "successful"),
    "375295111111": ("inactive", "failed"),
    "375444111111": ("invalid", "invalid"),
    "375290000000": ("active", "insufficient"),
}
OK = "Request successfully processed"
CHECK_V2: dict[str, dict[str, Any]] = {
    "active": {"service_activated": True, "message": OK,
               "validation": {"operator": "mts", "message": OK}},
    "inactive": {"service_activated": False, "message": OK,
                 "validation": {"operator": "mts", "message": OK},
                 "error_code": "service_not_activated"},
    "not_mts": {"service_activated": None, "message": None,
                "validation": {"operator": "other", "message": OK},
                "error_code": "account_not_found"},
    "invalid": {"service_activated": None, "message": None,
                "validation": {"operator": None, "message": "Invalid phone number format"},
                "error_code": "invalid_phone"},
}
CHECK_V3: dict[str, dict[str, Any]] = {
    "active": {"code": "S.0000", "status": "successful",
               "message": "The operation was successfully processed",
               "friendly_message": "Successfully processed"},
    "inactive": {"code": "F.0213", "status": "failed",
                "message": "Not allowed: Contact the payment service provider for details.",
                "friendly_message": "Not allowed: Failed to complete the transaction. Contact "
                                    "the merchant for details or use another payment method."},
    "not_mts": {"code": "F.0202", "status": "failed",
                 "message": "Account ID not found: Failed to complete the transaction. Check "
                            "the request parameters.",
                 "friendly_message": "Account ID not found: Failed to complete the transaction."
                                     " Contact the payment method provider for details."},
}
PHONE_INVALID = {"message": "Customer phone is invalid",
                 "errors": {"customer": {"phone": ["is invalid"]}}}
FINAL_MESSAGES = {
    "successful": ("successful", "Transaction was successfully processed."),
    "failed": ("failed", "Transaction was declined: MTS Money service is not active."),
    "insufficient": ("failed", "Insufficient funds."),
    "declined": ("failed", "The customer declined the MTS Money terms of service."),
    "not_mts": ("failed", "Not allowed: the phone number is not an MTS number."),
}
AGREEMENTS = ("already_accepted", "accept", "decline")


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class BepaidSandbox:
    def __init__(self, *, shop_id: str = "361", secret_key: str = "sandbox-secret-key",
                 progress_s: float = 0.3) -> None:
        self.shop_id, self.secret_key = shop_id, secret_key
        self.default_progress = progress_s
        self.log = RequestLog()
        self.lock = threading.Lock()
        self._stopped = threading.Event()
        self._timers: list[threading.Timer] = []
        self.http = httpx.Client(timeout=5.0)
        self.reset()

    def reset(self) -> None:
        with self.lock:
            for t in getattr(self, "_timers", []):
                t.cancel()
            self._timers = []
            self.transactions: dict[str, dict[str, Any]] = {}  # uid -> transaction
            self.numbers: dict[str, tuple[str, str]] = {}
            self.progress_s = self.default_progress
            self.faults: dict[str, int] = {}
            self.timeout_sleep_s = 3.0
            self.lose_webhooks = False
            self.webhook_retry_s = [0.2, 0.5, 1.0]
            self.api_version_default = 2
            self.deliveries: list[dict[str, Any]] = []
            self.counters = {"check": 0, "payment": 0, "created": 0, "lookup": 0,
                             "webhook_sent": 0, "webhook_failed": 0, "charged_minor": 0}
            self.log.clear()

    def stop(self) -> None:
        self._stopped.set()
        with self.lock:
            for t in self._timers:
                t.cancel()
        self.http.close()

    # --- helpers
    def _authorised(self, req: Request) -> bool:
        h = req.headers.get("authorization", "")
        if not h.lower().startswith("basic "):
            return False
        try:
            user, _, pw = base64.b64decode(h[6:].strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return hmac.compare_digest(user, self.shop_id) and hmac.compare_digest(pw, self.secret_key)

    def _behaviour(self, phone: str) -> tuple[str, str]:
        if phone in self.numbers:
            return self.numbers[phone]
        if phone in TEST_NUMBERS:
            return TEST_NUMBERS[phone]
        if not (phone.isdigit() and len(phone) == 12 and phone.startswith("375")):
            return ("invalid", "invalid")
        if phone[3:5] in ("29", "33"):
            return ("active", "successful")
        return ("not_mts", "not_mts")

    def _take_fault(self, name: str) -> bool:
        n = self.faults.get(name, 0)
        if n > 0:
            self.faults[name] = n - 1
            return True
        return False

    # --- HTTP entry
    def __call__(self, req: Request) -> Response | object:
        if req.path.startswith("/_sandbox/"):
            return self.control(req)
        body_text = req.body.decode("utf-8", "replace")
        self.log.add(method=req.method, path=req.path,
                     api_version=req.headers.get("x-api-version"),
                     authorised=self._authorised(req), body=body_text[:2000])
        if not self._authorised(req):
            return Response.json({"message": "Unauthorized"}, 401)
        if req.method == "POST" and req.path == CHECK_PATH:
            return self._check(req)
        if req.method == "POST" and req.path == PAYMENT_PATH:
            return self._payment(req)
        if req.method == "GET" and req.path.startswith(TX_PREFIX):
            return self._lookup(req)
        return Response.json({"message": "Not found"}, 404)

    def _json_request(self, req: Request) -> dict[str, Any] | Response:
        try:
            data = req.json()
        except (ValueError, UnicodeDecodeError):
            return Response.json({"message": "Request body is not valid JSON"}, 400)
        if not isinstance(data, dict) or not isinstance(data.get("request"), dict):
            return Response.json({"message": "Missing 'request'",
                                  "errors": {"request": ["is missing"]}}, 422)
        r: dict[str, Any] = data["request"]
        return r

    def _phone(self, r: dict[str, Any]) -> str | None:
        c = r.get("customer")
        if isinstance(c, dict) and isinstance(c.get("phone"), str):
            return str(c["phone"])
        return None

    def _check(self, req: Request) -> Response:
        with self.lock:
            self.counters["check"] += 1
        r = self._json_request(req)
        if isinstance(r, Response):
            return r
        phone = self._phone(r)
        if phone is None:
            return Response.json({"message": "Customer phone is missing",
                                  "errors": {"customer": {"phone": ["is missing"]}}}, 422)
        version = req.headers.get("x-api-version") or str(self.api_version_default)
        result, _ = self._behaviour(phone)
        if version == "3":
            if result == "invalid":
                return Response.json(PHONE_INVALID, 422)
            return Response.json(CHECK_V3[result])
        if version == "2":
            return Response.json(CHECK_V2[result])
        return Response.json({"message": f"Unsupported X-API-Version {version[:10]}"}, 400)

    def _validate_payment(self, r: dict[str, Any]) -> dict[str, list[str]]:
        errors: dict[str, list[str]] = {}
        amount = r.get("amount")
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            errors["amount"] = ["must be a positive integer in minimal currency units"]
        if r.get("currency") != "BYN":
            errors["currency"] = ["is not supported for mts_money"]
        for key in ("description", "tracking_id", "return_url"):
            if not isinstance(r.get(key), str) or not r[key]:
                errors[key] = ["is missing"]
        m = r.get("method")
        if not isinstance(m, dict) or m.get("type") != "mts_money":
            errors["method.type"] = ["must be mts_money"]
        elif m.get("confirm_agreement") not in AGREEMENTS:
            errors["method.confirm_agreement"] = [f"must be one of {', '.join(AGREEMENTS)}"]
        if self._phone(r) is None:
            errors["customer.phone"] = ["is missing"]
        return errors

    def _payment(self, req: Request) -> Response | object:
        with self.lock:
            self.counters["payment"] += 1
            if self._take_fault("fail_before_create"):
                return Response.json({"message": "Service Unavailable"}, 503)
        r = self._json_request(req)
        if isinstance(r, Response):
            return r
        errors = self._validate_payment(r)
        if errors:
            return Response.json({"message": "Validation failed", "errors": errors}, 422)
        phone = self._phone(r) or ""
        _, outcome = self._behaviour(phone)
        if outcome == "invalid":
            return Response.json(PHONE_INVALID, 422)
        agreement = r["method"]["confirm_agreement"]
        if agreement == "decline":
            outcome = "declined"
        uid = str(uuid.uuid4())
        tx = {
            "uid": uid, "type": "payment", "status": "pending", "amount": r["amount"],
            "currency": r["currency"], "description": r["description"],
            "created_at": _now(), "updated_at": _now(), "method_type": "mts_money",
            "receipt_url": f"https://merchant.bepaid.by/customer/transactions/{uid}/sandbox",
            "payment": {"status": "pending", "gateway_id": 3989,
                        "message": "Transaction was initialized."},
            "mts_money": {"type": "mts_money", "confirm_agreement": agreement},
            "customer": {"phone": phone, "email": None, "ip": None},
            "manually_corrected_at": None, "message": "Transaction was initialized.",
            "tracking_id": r["tracking_id"], "test": bool(r.get("test", False)),
            "billing_address": {"phone": phone},
            "additional_data": {"payment_method": {"type": "alternative"}},
            "gateway": {"iframe": False},
        }
        notify = r.get("notification_url") if isinstance(r.get("notification_url"), str) else None
        with self.lock:
            self.transactions[uid] = tx
            self.counters["created"] += 1
            timer = threading.Timer(self.progress_s, self._finish, args=(uid, outcome, notify))
            timer.daemon = True
            self._timers.append(timer)
            timer.start()
            answer = json.loads(json.dumps({"transaction": tx}))
            if self._take_fault("fail_after_create"):
                return Response.json({"message": "Internal Server Error"}, 500)
            if self._take_fault("drop_after_create"):
                return DROP
            if self._take_fault("nested_after_create"):  # an answer no JSON reader can nest
                return Response(200, "[" * 100_000, "application/json")
            slow = self._take_fault("timeout_after_create")
        if slow:
            time.sleep(self.timeout_sleep_s)
        return Response.json(answer)

    def _finish(self, uid: str, outcome: str, notify: str | None) -> None:
        status, message = FINAL_MESSAGES[outcome]
        with self.lock:
            tx = self.transactions.get(uid)
            if tx is None or self._stopped.is_set():
                return
            tx.update(status=status, message=message, updated_at=_now())
            tx["payment"] = {"status": status, "gateway_id": 3989, "message": message}
            if status == "successful":
                tx["paid_at"] = _now()
                self.counters["charged_minor"] += int(tx["amount"])
            body = json.dumps({"transaction": tx})
            lose = self.lose_webhooks
            retries = list(self.webhook_retry_s)
        if notify and not lose:
            self._deliver(uid, notify, body, retries)

    def _deliver(self, uid: str, url: str, body: str, retries: list[float]) -> None:
        for attempt, wait in enumerate([0.0, *retries]):
            if wait and self._stopped.wait(wait):
                return
            try:
                resp = self.http.post(url, content=body, auth=(self.shop_id, self.secret_key),
                                      headers={"Content-Type": "application/json"})
                code: int | str = resp.status_code
            except (httpx.HTTPError, RuntimeError) as exc:
                code = type(exc).__name__
            with self.lock:
                self.deliveries.append({"uid": uid, "attempt": attempt + 1, "result": code,
                                        "at": time.time()})
                if code == 200:
                    self.counters["webhook_sent"] += 1
                    return
        with self.lock:
            self.counters["webhook_failed"] += 1

    def _lookup(self, req: Request) -> Response:
        with self.lock:
            self.counters["lookup"] += 1
            if self._take_fault("lookup_fail"):
                return Response.json({"message": "Service Unavailable"}, 503)
            if req.path.startswith(TRACKING_PREFIX):
                tid = _unquote(req.path[len(TRACKING_PREFIX):])
                found = [t for t in self.transactions.values() if t["tracking_id"] == tid]
                return Response.json({"transactions": found})
            uid = _unquote(req.path[len(TX_PREFIX):])
            tx = self.transactions.get(uid)
            if tx is None:
                return Response.json({"message": "Transaction not found"}, 404)
            return Response.json({"transaction": tx})

    # --- control
    def control(self, req: Request) -> Response:
        if req.path == "/_sandbox/requests":
            return Response.json(self.log.items())
        if req.path == "/_sandbox/state":
            with self.lock:
                by_tracking: dict[str, list[dict[str, Any]]] = {}
                for t in self.transactions.values():
                    by_tracking.setdefault(t["tracking_id"], []).append(
                        {"uid": t["uid"], "status": t["status"], "amount": t["amount"]})
                return Response.json({"counters": self.counters, "by_tracking_id": by_tracking,
                                      "deliveries": self.deliveries, "faults": self.faults})
        if req.path == "/_sandbox/control" and req.method == "POST":
            try:
                c = req.json()
            except (ValueError, UnicodeDecodeError):
                return Response(400, "control body must be JSON")
            if c.get("reset"):
                self.reset()
            with self.lock:
                for key in ("fail_before_create", "fail_after_create", "drop_after_create",
                            "timeout_after_create", "nested_after_create", "lookup_fail"):
                    if key in c:
                        self.faults[key] = int(c[key])
                if "timeout_sleep_s" in c:
                    self.timeout_sleep_s = float(c["timeout_sleep_s"])
                if "progress_s" in c:
                    self.progress_s = float(c["progress_s"])
                if "lose_webhooks" in c:
                    self.lose_webhooks = bool(c["lose_webhooks"])
                if "webhook_retry_s" in c:
                    self.webhook_retry_s = [float(x) for x in c["webhook_retry_s"]]
                if "api_version_default" in c:
                    self.api_version_default = int(c["api_version_default"])
                self.numbers.update({k: (str(v[0]), str(v[1]))
                                     for k, v in c.get("numbers", {}).items()})
            return Response.json({"ok": True})
        return Response(404, "unknown sandbox path")

    def transactions_for(self, tracking_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(t) for t in self.transactions.values() if t["tracking_id"] == tracking_id]


def _unquote(s: str) -> str:
    from urllib.parse import unquote

    return unquote(s)


def serve(host: str = "127.0.0.1", port: int = 0,
          **kw: Any) -> tuple[BepaidSandbox, MultiPortServer]:
    app = BepaidSandbox(**kw)
    server = MultiPortServer(app, host, [port]).start()
    return app, server


def main() -> None:
    ap = argparse.ArgumentParser(description="bePaid MTS Money sandbox")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    app, server = serve(args.host, args.port)
    print(json.dumps({"bepaid": server.urls()[0]}), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        app.stop()
        server.stop()


if __name__ == "__main__":
    main()

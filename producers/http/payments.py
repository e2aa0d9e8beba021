"""MTS Money payment routes (producers/payments.py over HTTP; scope ``pay``):

    POST /v1/payments/mts-money/check        queue a service-activation check (optionally
                                             wait up to 25 s for its result)
    GET  /v1/payments/mts-money/check/{id}   the check and its result
    POST /v1/payments/mts-money              queue a payment (Idempotency-Key honoured)
    GET  /v1/payments/{id}                   the payment and its status history

Checks and payments belong to the producer that made them; another producer's id answers
404.  Ownership is kept beside the records (``PaymentStore.set_owner``, for the retention
period), the payment's ``callback_url`` and ``producer`` on the payment record itself, so the
callbacks dispatcher sends its status changes like a message's.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from starlette.routing import Route

from core.errors import UnknownMessage
from producers.http.framework import Api, Call, Reply
from producers.http.models import CheckIn, PaymentIn
from producers.http.problem import ApiError, from_validation
from producers.http.render import event_out, iso

_PAY_FIELDS = ("provider_status", "error_code", "reason", "uid", "check_result",
               "customer_answer", "callback_url", "expired_at")
_CHECK_FIELDS = ("result", "code", "message", "friendly_message", "reason", "error_code")


def payment_out(rec: dict[str, str], history: list[dict[str, Any]] | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": rec["id"], "status": rec["status"], "account": rec.get("account", ""),
        "phone": "+" + rec.get("phone", ""), "amount": int(rec.get("amount") or 0),
        "currency": rec.get("currency", ""), "description": rec.get("description", ""),
        "test": rec.get("test") == "1",
        "created_at": iso(rec.get("created_ms")), "updated_at": iso(rec.get("updated_ms")),
    }
    for k in _PAY_FIELDS:
        if rec.get(k):
            out[k] = rec[k]
    if history is not None:
        out["history"] = [event_out(e) for e in history]
    return out


def check_out(rec: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"id": rec["id"], "status": rec["status"],
                           "phone": "+" + str(rec.get("phone", "")),
                           "account": rec.get("account", ""),
                           "created_at": iso(rec.get("created_ms"))}
    for k in _CHECK_FIELDS:
        if rec.get(k):
            out[k] = str(rec[k])
    return out


class PaymentRoutes:
    def __init__(self, api: Api) -> None:
        from producers.payments import Payments

        self.api = api
        self.payments = Payments(api.settings, store=api.store, broker=api.producer.broker)

    def _own(self, call: Call, kind: str, rec_id: str, field: str | None = None) -> None:
        if len(rec_id) > 64 or self.payments.ps.owner(kind, rec_id) != call.producer:
            raise ApiError(404, f"no such {kind} (or not yours, or expired after retention)",
                           field=field)

    def _claim(self, call: Call, kind: str, rec_id: str) -> None:
        self.payments.ps.set_owner(kind, rec_id, call.producer)

    def check(self, call: Call) -> Reply:
        try:
            m = CheckIn.model_validate(call.json())
        except ValidationError as exc:
            raise from_validation(exc) from None
        check_id = self.payments.check_mts_money(m.phone, account=m.account)
        self._claim(call, "check", check_id)
        rec = self.payments.check_result(check_id, wait_s=m.wait_s or 0.0)
        done = rec["status"] != "queued"
        return Reply(200 if done else 202, check_out({**rec, "id": check_id}),
                     {"Location": f"/v1/payments/mts-money/check/{check_id}"})

    def get_check(self, call: Call) -> Reply:
        check_id = call.path_params["id"]
        self._own(call, "check", check_id)
        try:
            rec = self.payments.check_result(check_id)
        except UnknownMessage:
            raise ApiError(404, "no such check (or expired)") from None
        return Reply(200, check_out({**rec, "id": check_id}))

    def pay(self, call: Call) -> Reply:
        try:
            m = PaymentIn.model_validate(call.json())
        except ValidationError as exc:
            raise from_validation(exc) from None
        if m.check_id is not None:
            self._own(call, "check", m.check_id, field="check_id")
        pay_id = self.payments.pay_mts_money(
            m.phone, m.amount, description=m.description, currency=m.currency,
            customer_answer=m.customer_answer, check_id=m.check_id, account=m.account,
            return_url=m.return_url, expired_at=m.expired_at, test=m.test,
            idempotency_key=m.idempotency_key, producer=call.producer, callback_url=m.callback_url,
            allow_private_callback=bool(m.callback_url)
            and self.api.tokens.allows_private_callbacks(call.producer))
        self._claim(call, "payment", pay_id)
        return Reply(202, {"id": pay_id, "status": "queued"},
                     {"Location": f"/v1/payments/{pay_id}"})

    def get_payment(self, call: Call) -> Reply:
        pay_id = call.path_params["id"]
        self._own(call, "payment", pay_id)
        try:
            rec = self.payments.payment(pay_id)
        except UnknownMessage:
            raise ApiError(404, "no such payment (or expired)") from None
        history = rec.pop("history", [])
        return Reply(200, payment_out({**rec, "id": pay_id}, history))


def routes(api: Api) -> list[Route]:
    p = PaymentRoutes(api)
    return [
        api.route("/v1/payments/mts-money/check", p.check, methods=["POST"], scope="pay",
                  name="check_mts_money"),
        api.route("/v1/payments/mts-money/check/{id}", p.get_check, methods=["GET"],
                  scope=("pay", "read"), name="get_mts_money_check"),
        api.route("/v1/payments/mts-money", p.pay, methods=["POST"], scope="pay",
                  idempotent=True, name="pay_mts_money"),
        api.route("/v1/payments/{id}", p.get_payment, methods=["GET"],
                  scope=("pay", "read"), name="get_payment"),
    ]

"""``gonets pay``: MTS Money through bePaid (check, create, status, sweep, webhooks)."""

from __future__ import annotations

import argparse
import json
import time

from cli.args import account_option
from cli.runfile import require_configuration
from core.errors import UnknownMessage


class UnknownPayment(UnknownMessage):
    """``gonets pay status`` of an id no payment has."""


def add_parser(sub: argparse._SubParsersAction) -> str:  # type: ignore[type-arg]
    p = sub.add_parser("pay", help="MTS Money payments through bePaid")
    pay = p.add_subparsers(dest="pay_command", required=True, metavar="ACTION")
    q = pay.add_parser("check", help="is MTS Money active for this number? (waits for it)")
    q.add_argument("--phone", required=True, help="the customer's number")
    account_option(q, "bePaid account")
    q.add_argument("--wait", type=float, default=15.0, help="seconds to wait for the answer")
    q = pay.add_parser("create", help="queue a payment and print its id")
    q.add_argument("--phone", required=True, help="the customer's number")
    q.add_argument("--amount", type=int, required=True, help="minor units: 1050 = 10.50 BYN")
    q.add_argument("--description", required=True, help="what is paid for (the customer sees it)")
    q.add_argument("--currency", default="BYN", help="ISO code (default BYN)")
    q.add_argument("--answer", choices=["accept", "decline"],
                   help="the customer's answer to the MTS Money terms")
    q.add_argument("--check-id", help="the id of an earlier gonets pay check")
    account_option(q, "bePaid account")
    q.add_argument("--return-url", help="where bePaid sends the customer afterwards")
    q.add_argument("--idempotency-key", metavar="KEY",
                   help="the same key returns the first payment's id instead of paying again")
    q = pay.add_parser("status", help="show a payment's status and history")
    q.add_argument("id", help="the id gonets pay create printed")
    q.add_argument("--json", action="store_true", help="as JSON, in the HTTP API's shape")
    q = pay.add_parser("sweep", help="look up every payment pending too long now")
    account_option(q, "bePaid account")
    q = pay.add_parser("webhooks", help="run only the bePaid notification receiver")
    q.add_argument("--host", default="127.0.0.1", help="address to listen on")
    q.add_argument("--port", type=int, default=8089, help="port to listen on (default 8089)")
    return "pay"


def run(a: argparse.Namespace) -> int:
    """MTS Money through bePaid: check, create, status, sweep, webhooks."""
    require_configuration()
    if a.pay_command == "webhooks":
        import uvicorn

        from core.settings import get_settings
        from producers.http.bepaid_webhook import make_app

        uvicorn.run(make_app(get_settings()), host=a.host, port=a.port, log_level="warning")
        return 0
    from producers.payments import get_payments

    pay = get_payments()
    if a.pay_command == "check":
        rec = pay.check_result(pay.check_mts_money(a.phone, account=a.account), wait_s=a.wait)
        print(json.dumps({k: rec.get(k) for k in ("id", "status", "result", "code", "message",
                                                  "friendly_message", "reason") if rec.get(k)},
                         ensure_ascii=False))
        return 0 if rec["status"] == "done" else 1
    if a.pay_command == "create":
        pay_id = pay.pay_mts_money(a.phone, a.amount, description=a.description,
                                   currency=a.currency, customer_answer=a.answer,
                                   check_id=a.check_id, account=a.account,
                                   return_url=a.return_url, idempotency_key=a.idempotency_key)
        print(pay_id)
        return 0
    if a.pay_command == "status":
        from core.privacy import mask_phone

        try:
            rec = pay.payment(a.id)
        except UnknownMessage:
            raise UnknownPayment(a.id) from None
        if a.json:  # the HTTP API's shape and types, the number masked
            from producers.http.payments import payment_out

            out = payment_out(rec, rec["history"])
            out["phone"] = "+" + mask_phone(out["phone"])
            print(json.dumps(out, ensure_ascii=False, indent=2))
            return 0

        print(f"{rec['id']}  {rec['status']}  account={rec['account']} "
              f"phone={mask_phone(rec['phone'])} amount={rec['amount']} {rec['currency']} "
              f"(minor units) uid={rec.get('uid', '-')} bepaid={rec.get('provider_status', '-')}")
        for ev in rec["history"]:
            at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ev["at_ms"] / 1000))
            extra = " ".join(f"{k}={v}" for k, v in ev.items()
                             if k not in ("id", "kind", "status", "at_ms"))
            print(f"  {at}  {ev['status']:<10} {extra}")
        return 0
    if a.pay_command == "sweep":
        print("pending sweep queued for " + ", ".join(pay.sweep_pending_payments(a.account)))
        return 0
    return 2

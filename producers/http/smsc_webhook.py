"""Webhook in: SMSC's HTTP status callbacks (``POST /v1/webhooks/smsc/{account}/{secret}``).

SMSC can POST each status change of a message to a handler URL set in the SMSC account
(``application/x-www-form-urlencoded``: ``id`` — the message id, which is Gonets' own numeric
``seq`` because Gonets sends ``id=``; ``phone``; ``status`` — SMSC's status code; ``err`` —
its error code).  shared/providers/smsc-http-api-1c-library.txt says nothing about callbacks
and SMSC signs nothing we could check, so the URL itself is the credential: it ends in a
secret from the account's credentials (``callback_secret = "env:VAR"``), compared in constant
time.  Set the handler URL at SMSC to ``https://<gonets>/v1/webhooks/smsc/<account>/<secret>``.

A callback is read with the status poll's own table (``core/smsc_status.py``) and applied
with the same record change (``core.facts.record_status``: a final status never changes, a
late one never moves it back), so a callback and a poll racing each other agree.  It is
applied here, synchronously, not handed to a worker job: SMSC is answered only once the status
is stored, and two callbacks for one message apply in the order they came.  A callback whose
``err`` asks for more than a status (220 resend, 224 no funds, 251 flood, 239/254 account) is
handed to a worker's status poll instead, which reads the same status and does what it asks.
An id Gonets does not know is acknowledged and ignored (SMSC would otherwise retry it forever).
"""

from __future__ import annotations

import hmac
import logging
import re
from urllib.parse import parse_qs

from starlette.routing import Route

from core.errors import ConfigError
from core.facts import record_status
from core.smsc_status import smsc_report
from producers.http.framework import Api, Call, Reply
from producers.http.problem import ApiError

log = logging.getLogger("gonets.api.smsc")

#: ASCII digits only: "²" passes str.isdigit() and is no digit of an id or a code
_DIGITS = re.compile(r"[0-9]+")


def parse_callback(body: bytes) -> tuple[str, int, str | None, str | None]:
    """``(id, status, err, phone)`` from the form body. Raises ApiError(422) naming the field."""
    try:
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8"), keep_blank_values=True,
                                             max_num_fields=50).items()}
    except (UnicodeDecodeError, ValueError):
        raise ApiError(422, "not a UTF-8 form body", field="body") from None
    msg_id = form.get("id", "").strip()
    if not _DIGITS.fullmatch(msg_id) or len(msg_id) > 20:
        raise ApiError(422, "a numeric message id is required", field="id")
    raw_status = form.get("status", "").strip()
    if not _DIGITS.fullmatch(raw_status.removeprefix("-")) or len(raw_status) > 6:
        raise ApiError(422, "a numeric SMSC status code is required", field="status")
    status = int(raw_status)
    if not -10 <= status <= 1000:
        raise ApiError(422, "not an SMSC status code", field="status")
    err = form.get("err", "").strip() or None
    if err is not None and (not _DIGITS.fullmatch(err.lstrip("-")) or len(err) > 6):
        raise ApiError(422, "must be a numeric error code", field="err")
    phone = form.get("phone", "").strip().lstrip("+") or None
    return msg_id, status, (None if err in (None, "0") else err), phone


class SmscWebhook:
    def __init__(self, api: Api) -> None:
        self.api = api

    def _authenticate(self, account: str, secret: str) -> None:
        try:
            acct = self.api.settings.account(account)
            expected = acct.secret("callback_secret") if acct.provider == "smsc_http" else ""
        except ConfigError:
            expected = ""
        # the same 404 for an unknown account, one without callbacks and a wrong secret
        if not expected or not hmac.compare_digest(expected.encode(), secret.encode()):
            raise ApiError(404, "no such webhook")

    def receive(self, call: Call) -> Reply:
        account = call.path_params["account"]
        self._authenticate(account, call.path_params["secret"])
        seq, code, err, phone = parse_callback(call.body)
        store = self.api.store
        msg_id = store.by_provider_id(account, seq)
        rec = store.find(msg_id) if msg_id else None
        if msg_id is None or rec is None:
            log.info("SMSC callback for unknown id %s on %s: ignored", seq, account)
            return Reply(200, "OK", media_type="text/plain")
        if phone is not None and phone != rec.get("phone"):
            raise ApiError(422, "does not match the message's number", field="phone")
        rep = smsc_report(code, err)  # the status poll's table (core/smsc_status.py)
        if rep is not None and (rep.resend is not None or rep.account_problem is not None):
            # the err asks for a resend or an account alert, which a worker does: its poll
            # reads the same status and acts as on a receipt (never only recorded here)
            self.api.producer.poll_status(msg_id)
        elif rep is not None:
            record_status(store, msg_id, rep)
        return Reply(200, "OK", media_type="text/plain")


def routes(api: Api) -> list[Route]:
    hook = SmscWebhook(api)
    return [api.route("/v1/webhooks/smsc/{account}/{secret}", hook.receive, methods=["POST"],
                      scope=None, json_body=False, name="smsc_callback")]

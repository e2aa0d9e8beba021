"""bePaid client for MTS Money (shared/providers/bepaid-mts-money.md).

* Service-activation check: ``POST /beyag/gateways/mts_money_widget/check_service`` with
  ``X-API-Version: 2`` (``service_activated``, ``validation.operator``, ``error_code``) or ``3``
  (``code``, ``status``, ``message``, ``friendly_message``), chosen per account; both are
  turned into one typed ``CheckAnswer``.
* Payment: ``POST /beyag/payments`` with ``method.type = mts_money``; the answer is a
  ``pending`` transaction with bePaid's ``uid``.
* Lookups (bePaid's APM API, not in the MTS Money document): ``GET /beyag/transactions/<uid>``
  and ``GET /beyag/transactions/tracking_id/<tracking_id>`` (a list).

HTTP Basic with the shop id and secret key (credentials ``shop_id`` and ``secret_key``).
Errors are translated here into ``core.errors``; a payment request whose answer was lost after
it was sent (read timeout, reset, 5xx) raises ``OutcomeUnknown``: the caller must look the
payment up by ``tracking_id`` before it may send it again.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from core.errors import AccountProblem, OutcomeUnknown, Permanent, RetryLater, SlowDown
from core.payments import (
    CheckResult,
    Transaction,
    parse_transaction_envelope,
    parse_transactions,
)
from core.privacy import mask_phone
from core.provider_options import BepaidOptions, bepaid_options
from core.settings import Account
from workers.providers.base import ProviderContext
from workers.providers.payment import CheckAnswer, PaymentRequest

__all__ = ["Bepaid", "CheckAnswer", "PaymentRequest", "parse_check"]

log = logging.getLogger(__name__)

PROVIDER = "bepaid"
DEFAULT_URL = "https://api.bepaid.by"
CHECK_PATH = "/beyag/gateways/mts_money_widget/check_service"
PAYMENT_PATH = "/beyag/payments"
UID_PATH = "/beyag/transactions/{uid}"
TRACKING_PATH = "/beyag/transactions/tracking_id/{tracking_id}"

# --- protocol knowledge as data ------------------------------------------------------------

#: API v3 check codes -> result (the document's three examples); other ``failed`` codes are
#: ``refused``; the raw code is kept on every check either way.  Read by meaning, not by the
#: examples' captions: in bepaid-mts-money.md the v2 examples' captions are swapped against
#: their fields (the one captioned "doesn't belong to MTS" has ``operator: mts`` and
#: ``service_not_activated``; the one captioned "belongs to MTS" has ``operator: other`` and
#: ``account_not_found``, and the parameter table says ``other`` / ``null`` = not MTS), and
#: the v3 examples carry their captions in the same order.  So F.0202 "Account ID not found"
#: is v2's ``account_not_found`` (not an MTS number) and F.0213 "Not allowed" is the MTS
#: number without the service (the customer may accept the terms).
V3_CODES: dict[str, CheckResult] = {
    "S.0000": CheckResult.ACTIVE,
    "F.0202": CheckResult.NOT_MTS,            # Account ID not found: no MTS account
    "F.0213": CheckResult.MUST_ACCEPT_TERMS,  # Not allowed: MTS number, service not active
}
#: API v2 ``validation.operator`` values
OPERATORS = ("mts", "other")


def _body(req: PaymentRequest) -> dict[str, Any]:
    """bePaid's payment request body (``POST /beyag/payments``)."""
    body: dict[str, Any] = {
        "amount": req.amount, "currency": req.currency, "description": req.description,
        "test": req.test, "tracking_id": req.tracking_id, "return_url": req.return_url,
        "customer": {"phone": req.phone},
        "method": {"type": "mts_money", "confirm_agreement": req.confirm_agreement},
    }
    if req.expired_at:
        body["expired_at"] = req.expired_at
    if req.notification_url:
        body["notification_url"] = req.notification_url
    return {"request": body}


# --- pure parsers (property-tested) --------------------------------------------------------


def _opt_str(d: dict[str, Any], key: str) -> str | None:
    v = d.get(key)
    if v is None:
        return None
    if not isinstance(v, str):
        raise ValueError(f"{key} must be a string or null")
    return v[:1000]


def parse_check(data: Any, api_version: int) -> CheckAnswer:
    """A check answer in the format of ``api_version``. Raises ValueError when malformed."""
    if not isinstance(data, dict):
        raise ValueError("a check answer must be a JSON object")
    if api_version == 3:
        code, status = data.get("code"), data.get("status")
        if not isinstance(code, str) or not isinstance(status, str):
            raise ValueError("v3 check answer needs string 'code' and 'status'")
        if status == "successful":
            result = CheckResult.ACTIVE
        elif status == "failed":
            result = V3_CODES.get(code, CheckResult.REFUSED)
            if result is CheckResult.ACTIVE:
                raise ValueError(f"failed check with success code {code}")
        else:
            raise ValueError(f"unknown v3 check status {status[:40]!r}")
        return CheckAnswer(result, 3, code=code[:40], message=_opt_str(data, "message"),
                           friendly_message=_opt_str(data, "friendly_message"))
    if "service_activated" not in data:
        raise ValueError("v2 check answer without service_activated")
    activated = data["service_activated"]
    if activated not in (True, False, None):
        raise ValueError("service_activated must be true, false or null")
    validation = data.get("validation")
    if validation is not None and not isinstance(validation, dict):
        raise ValueError("validation must be an object")
    operator = (validation or {}).get("operator")
    if operator is not None and operator not in OPERATORS:
        raise ValueError("validation.operator must be mts, other or null")
    error_code = _opt_str(data, "error_code")
    # the parameter table: operator null = invalid number, other = not MTS;
    # service_activated true = active, false = must accept terms, null = not MTS
    if validation is not None and operator is None:
        result = CheckResult.INVALID_PHONE
    elif operator == "other" or activated is None:
        result = CheckResult.NOT_MTS
    elif activated is True:
        result = CheckResult.ACTIVE
    else:
        result = CheckResult.MUST_ACCEPT_TERMS
    return CheckAnswer(result, 2, code=error_code[:40] if error_code else None,
                       message=_opt_str(data, "message"), operator=operator)


def _json(resp: httpx.Response) -> Any:
    """The answer's JSON; raises only ValueError (also for nesting too deep to read, which
    ``json`` reports as RecursionError, and for bytes that are not text)."""
    try:
        return resp.json()
    except RecursionError as exc:
        raise ValueError("the answer nests too deeply to be read") from exc


def _error_text(resp: httpx.Response) -> str:
    try:
        data = _json(resp)
    except ValueError:
        return f"HTTP {resp.status_code}"
    if isinstance(data, dict):
        msg = data.get("message") or data.get("error")
        if isinstance(msg, str):
            return msg[:300]
    return f"HTTP {resp.status_code}"


def _mentions_phone(resp: httpx.Response) -> bool:
    try:
        data = _json(resp)
    except ValueError:
        return False
    return isinstance(data, dict) and "phone" in str(data.get("errors", ""))


# --- the client ----------------------------------------------------------------------------


class Bepaid:
    """One bePaid shop account. Thread-safe (one httpx.Client)."""

    def __init__(self, account: Account, ctx: ProviderContext | None = None, *,
                 client: httpx.Client | None = None) -> None:
        self.account = account
        self.opts: BepaidOptions = bepaid_options(account)
        self.url = (account.base_urls[0] if account.base_urls else DEFAULT_URL).rstrip("/")
        self.client = client or httpx.Client(
            timeout=httpx.Timeout(account.timeout_s, connect=min(5.0, account.timeout_s)),
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=32))

    def _auth(self) -> tuple[str, str]:
        return self.account.secret("shop_id"), self.account.secret("secret_key")

    def _headers(self, api_version: int | None = None) -> dict[str, str]:
        h = {"Accept": "application/json"}
        if api_version is not None:
            h["X-API-Version"] = str(api_version)
        return h

    def _common_errors(self, resp: httpx.Response, what: str) -> None:
        """Errors every request shares (raised before the body is read)."""
        if resp.status_code in (401, 403):
            raise AccountProblem(f"bePaid refused the shop credentials ({what})",
                                 code=str(resp.status_code), provider=PROVIDER,
                                 alert="credentials")
        if resp.status_code == 429:
            raise SlowDown(f"bePaid throttled the {what}", code="429", provider=PROVIDER,
                           delay_s=10.0)

    # --- check
    def check(self, phone: str, *, test: bool | None = None) -> CheckAnswer:
        version = self.opts.api_version
        body = {"request": {"test": self.opts.test if test is None else test,
                            "customer": {"phone": phone}}}
        try:
            resp = self.client.post(self.url + CHECK_PATH, json=body, auth=self._auth(),
                                    headers=self._headers(version))
        except httpx.TransportError as exc:
            raise RetryLater("bePaid did not answer the check", provider=PROVIDER) from exc
        self._common_errors(resp, "check")
        if resp.status_code >= 500:
            raise RetryLater(f"bePaid answered the check with HTTP {resp.status_code}",
                             code=str(resp.status_code), provider=PROVIDER)
        if resp.status_code in (400, 422):
            if _mentions_phone(resp):
                return CheckAnswer(CheckResult.INVALID_PHONE, version,
                                   code=str(resp.status_code), message=_error_text(resp))
            raise Permanent(f"bePaid refused the check: {_error_text(resp)}",
                            code=str(resp.status_code), provider=PROVIDER, rejected=True)
        if resp.status_code != 200:
            raise Permanent(f"bePaid answered the check with HTTP {resp.status_code}",
                            code=str(resp.status_code), provider=PROVIDER)
        try:
            answer = parse_check(_json(resp), version)
        except ValueError as exc:
            raise RetryLater("bePaid answered the check with something unreadable",
                             provider=PROVIDER) from exc
        log.info("check %s: %s (api v%s, code %s)", mask_phone(phone), answer.result.value,
                 version, answer.code)
        return answer

    # --- payment
    def pay(self, req: PaymentRequest) -> Transaction:
        """Create the payment. ``OutcomeUnknown`` when it may have been created."""
        try:
            resp = self.client.post(self.url + PAYMENT_PATH, json=_body(req), auth=self._auth(),
                                    headers=self._headers())
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise RetryLater("bePaid could not be reached; nothing was sent",
                             provider=PROVIDER) from exc
        except httpx.TransportError as exc:
            raise OutcomeUnknown("the payment request went out but no answer came back",
                                 provider=PROVIDER) from exc
        self._common_errors(resp, "payment")
        if resp.status_code >= 500:
            raise OutcomeUnknown(f"bePaid answered the payment with HTTP {resp.status_code}",
                                 code=str(resp.status_code), provider=PROVIDER)
        if resp.status_code >= 400:
            raise Permanent(f"bePaid refused the payment: {_error_text(resp)}",
                            code=str(resp.status_code), provider=PROVIDER, rejected=True)
        if resp.status_code not in (200, 201):
            raise OutcomeUnknown(f"bePaid answered the payment with HTTP {resp.status_code}",
                                 code=str(resp.status_code), provider=PROVIDER)
        try:
            tx = parse_transaction_envelope(_json(resp))
        except ValueError as exc:
            raise OutcomeUnknown("bePaid answered the payment with something unreadable",
                                 provider=PROVIDER) from exc
        log.info("payment %s for %s: %s uid=%s", req.tracking_id, mask_phone(req.phone),
                 tx.raw_status, tx.uid)
        return tx

    # --- lookups
    def _get(self, path: str, what: str) -> httpx.Response | None:
        try:
            resp = self.client.get(self.url + path, auth=self._auth(), headers=self._headers())
        except httpx.TransportError as exc:
            raise RetryLater(f"bePaid did not answer the {what}", provider=PROVIDER) from exc
        self._common_errors(resp, what)
        if resp.status_code == 404:
            return None
        if resp.status_code >= 500:
            raise RetryLater(f"bePaid answered the {what} with HTTP {resp.status_code}",
                             code=str(resp.status_code), provider=PROVIDER)
        if resp.status_code != 200:
            raise RetryLater(f"bePaid answered the {what} with HTTP {resp.status_code}",
                             code=str(resp.status_code), provider=PROVIDER)
        return resp

    def by_uid(self, uid: str) -> Transaction | None:
        resp = self._get(UID_PATH.format(uid=_quote(uid)), "lookup by uid")
        if resp is None:
            return None
        try:
            return parse_transaction_envelope(_json(resp))
        except ValueError as exc:
            raise RetryLater("bePaid answered the lookup with something unreadable",
                             provider=PROVIDER) from exc

    def by_tracking_id(self, tracking_id: str) -> list[Transaction]:
        """Every transaction bePaid has for ``tracking_id`` (empty: it has none)."""
        resp = self._get(TRACKING_PATH.format(tracking_id=_quote(tracking_id)),
                         "lookup by tracking_id")
        if resp is None:
            return []
        try:
            return parse_transactions(_json(resp))
        except ValueError as exc:
            raise RetryLater("bePaid answered the lookup with something unreadable",
                             provider=PROVIDER) from exc

    def close(self) -> None:
        self.client.close()


def _quote(s: str) -> str:
    from urllib.parse import quote

    return quote(s, safe="")

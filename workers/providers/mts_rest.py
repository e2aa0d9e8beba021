"""MTS Belarus SMS Pro REST provider (shared/providers/mts-belarus-sms-pro-and-bitrix.md).

* OAuth 2.0 ``client_credentials`` against ``/oauth/token``.  The token is cached **in Redis,
  keyed by client_id** (``<ns>:oauth:mts_rest:<client_id>``), so every thread of every worker
  of every pod shares one token.  It is kept for its lifetime (``expires_in``, 3600 s) less a
  margin, so it is refreshed a little before it expires, by one caller holding the lock
  ``<key>:lock`` while the others wait and then read what it stored (no stampede).
* On a 401 the token that failed is dropped (only if it is still the cached one, so a burst
  of 401s refreshes once), a token is fetched, and the send is retried **once**, without
  recursion.  A second 401 with a fresh token is an account problem (credentials).
* ``POST /sms/v1/messages`` with ``phone``, ``text``, ``sender``, ``validity`` (minutes): the
  message's own validity, else by kind (``transactional_validity_min``, default 10, for codes;
  ``promotional_validity_min``, default 1440).
* The API answers HTTP 200 even when the message failed: the per-message status in the body
  decides.  The document names the error codes but shows no body, so the reader accepts the
  shapes ``{"messages": [item]}``, ``[item]`` or ``item``, where an item carries ``message_id``
  (or ``id``), ``status``, and on failure ``error_code`` (or ``code``, or ``error.code``); a
  ``code`` may also be an HTTP-like 200 or a word ("OK") beside the id of an accepted message.
  A code is a number however it is spelled (5, "005", 5.0).  An answer that cannot be
  classified (no id, no error it names) is an unknown outcome that keeps the message.
* ``GET /sms/v1/messages/{id}/status``: ``DELIVERED``, ``EXPIRED``, ``REJECTED`` are final;
  ``UNKNOWN`` (and anything unrecognised, kept raw) stays ``submitted`` and is polled again.

What each error code does (``SEND_ERRORS``): 1 rejected (the producer checks numbers first,
so it is rare); 5 ``SlowDown`` with a delay (requeued, never lost); 10 the message fails and
the account is alerted once and its pool pauses; 20 ``AccountProblem`` (alert, pause, the
messages stay queued); any other code named as an error (``error_code``, ``error``, or a
failed ``status``) is kept raw and fails the message.

The API has no way to look a message up by a reference of ours: a send whose answer was lost
(read timeout, dropped connection, unreadable answer: ``OutcomeUnknown``) cannot be checked,
so ``lookup`` raises ``NoLookup`` with the account's ``on_lost_answer`` and the worker resends
it or closes it ``unknown`` (``workers/outcomes.py``).  A 5xx answer is taken as "not
accepted" and retried.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any

import httpx
import redis

from core.contracts import Status
from core.errors import (
    AccountProblem,
    NoLookup,
    OutcomeUnknown,
    Permanent,
    ProviderError,
    RetryLater,
    SlowDown,
)
from core.keys import Keys
from core.locks import locks_for, new_token
from core.privacy import scrub_text
from core.provider_options import MtsRestAccountOptions
from core.settings import Account
from workers.providers.base import (
    Balance,
    CheckPlan,
    Outgoing,
    Pacing,
    ProviderContext,
    StatusReport,
    Submitted,
    account_options,
    wire_extensions,
)

log = logging.getLogger(__name__)

PROVIDER = "mts_rest"
DEFAULT_URL = "https://api.mts.by"
TOKEN_PATH = "/oauth/token"
SEND_PATH = "/sms/v1/messages"
STATUS_PATH = "/sms/v1/messages/{id}/status"
#: the document's token lifetime, used when the token answer has no ``expires_in``
DEFAULT_TOKEN_TTL_S = 3600.0

# --- protocol knowledge as data ------------------------------------------------------------

#: MTS per-message error code -> (error class, kwargs)
SEND_ERRORS: dict[str, tuple[type[ProviderError], dict[str, Any]]] = {
    "1": (Permanent, {"detail": "invalid phone format", "rejected": True}),
    "5": (SlowDown, {"detail": "MTS limit exceeded; requeued and slowed down"}),
    "10": (Permanent, {"detail": "sender name not registered with MTS", "alert": "sender"}),
    "20": (AccountProblem, {"detail": "insufficient funds on the MTS account",
                            "alert": "no_funds"}),
}
#: MTS message state -> Gonets status; anything else stays ``submitted`` (kept raw)
STATUS_MAP: dict[str, Status] = {
    "DELIVERED": Status.DELIVERED,
    "EXPIRED": Status.EXPIRED,
    "REJECTED": Status.REJECTED,
    "UNKNOWN": Status.SUBMITTED,
}
#: item states that mean the message was not accepted, even without an error code
_FAILED_STATES = {"ERROR", "FAILED", "REJECTED"}


# --- pure readers (table-tested, property-tested) ------------------------------------------


class SendAnswer:
    """One message's outcome in a send answer: ``message_id`` or ``error_code``."""

    def __init__(self, message_id: str | None, status: str, error_code: str | None,
                 error_message: str) -> None:
        self.message_id = message_id
        self.status = status
        self.error_code = error_code
        self.error_message = error_message


def _scalar(v: Any) -> str | None:
    if v is None or isinstance(v, (dict, list, bool)):
        return None
    s = str(v).strip()
    return s or None


_NUMBER = re.compile(r"[+-]?[0-9]{1,18}(?:\.0*)?")


def code_of(v: Any) -> str | None:
    """A code however it is spelled: ``5``, ``"5"``, ``"005"``, ``5.0`` and ``"5.0"`` are all
    "5"; a word is upper-cased ("ok" -> "OK"); anything else (nothing, a list, an object, a
    boolean) is no code."""
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e18:
        return str(int(v))
    s = _scalar(v)
    if s is None:
        return None
    if _NUMBER.fullmatch(s):
        return str(int(s.split(".")[0]))
    return s.upper()


def load_json(body: str) -> Any:
    """``json.loads`` that raises only ValueError (deep nesting raises RecursionError)."""
    try:
        return json.loads(body)
    except RecursionError as exc:
        raise ValueError("the answer nests too deeply to be read") from exc


#: codes an answer may carry for "accepted" (an HTTP status, a word): no error code
OK_CODES = frozenset({"0", "200", "201", "202", "OK", "SUCCESS", "ACCEPTED"})


def parse_send_answer(body: str) -> SendAnswer:
    """Read a ``POST /sms/v1/messages`` answer. Liberal in what it reads (any of the shapes
    above; a code however it is spelled), strict in what it decides:

    * a documented error code (1, 5, 10, 20) is that error;
    * else a message id means MTS took the message (its status poll says the rest);
    * else an error named as one (``error_code``, ``error``) or a failed ``status`` fails it
      with the raw code;
    * anything else cannot be classified: ValueError, which the provider turns into an
      unknown outcome that keeps the message.

    Raises only ValueError."""
    data = load_json(body)
    if isinstance(data, dict) and "messages" in data:
        data = data["messages"]
    if isinstance(data, list):
        if len(data) != 1:
            raise ValueError(f"expected the outcome of one message, got {len(data)}")
        data = data[0]
    if not isinstance(data, dict):
        raise ValueError("the answer is not an object")
    err = data.get("error")
    named = code_of(data.get("error_code"))  # a field that says it holds an error
    message = _scalar(data.get("error_message")) or _scalar(data.get("message")) or ""
    if isinstance(err, dict):
        named = named or code_of(err.get("code"))
        message = message or _scalar(err.get("message")) or ""
    elif err is not None and not message:
        message = _scalar(err) or ""
    plain = code_of(data.get("code"))  # an error code, an HTTP-like status or a word
    named = None if named in OK_CODES else named
    plain = None if plain in OK_CODES else plain
    status = (_scalar(data.get("status")) or "").upper()
    msg_id = _scalar(data.get("message_id")) or _scalar(data.get("id"))
    for code in (named, plain):
        if code in SEND_ERRORS:
            return SendAnswer(None, status or "ERROR", code, message)
    if msg_id is not None:
        return SendAnswer(msg_id, status or "ACCEPTED", None, "")
    if named is not None or (err not in (None, "", {}) and plain is not None):
        return SendAnswer(None, status or "ERROR", named or plain, message)
    if status in _FAILED_STATES:
        return SendAnswer(None, status, plain or "unknown", message)
    raise ValueError("the answer has neither a message id nor an error it names")


def parse_status_answer(body: str) -> str:
    """Read a status answer; returns the MTS state, upper-cased. Raises only ValueError."""
    data = load_json(body)
    if isinstance(data, dict) and isinstance(data.get("messages"), list) \
            and len(data["messages"]) == 1:
        data = data["messages"][0]
    if not isinstance(data, dict):
        raise ValueError("the answer is not an object")
    state = _scalar(data.get("status")) or _scalar(data.get("state"))
    if state is None:
        raise ValueError("the answer has no status")
    return state.upper()


def status_report(state: str) -> StatusReport:
    return StatusReport(status=STATUS_MAP.get(state, Status.SUBMITTED), raw=state)


def send_error(ans: SendAnswer, slow_down_delay_s: float) -> ProviderError:
    """The Gonets error for a failed message; unknown codes are kept raw and are permanent."""
    entry = SEND_ERRORS.get(ans.error_code or "")
    if entry is None:
        detail = "MTS refused the message"
        if ans.error_message:
            detail += f": {scrub_text(ans.error_message)[:200]}"
        return Permanent(detail, code=ans.error_code, provider=PROVIDER)
    cls, kw = entry
    kw = dict(kw)
    if cls is SlowDown:
        kw["delay_s"] = slow_down_delay_s
    return cls(code=ans.error_code, provider=PROVIDER, **kw)


# --- the token cache -----------------------------------------------------------------------


class TokenCache:
    """One OAuth token per client_id, shared through Redis, refreshed by one caller at a time
    (the refresh lock is a ``core.locks`` lock; the token and the lock are named in
    ``core/keys.py``)."""

    def __init__(self, r: redis.Redis, key: str, fetch: Callable[[], tuple[str, float]],
                 margin_s: float, lock_timeout_s: float = 30.0) -> None:
        self.r = r
        self.locks = locks_for(r)
        self.key = key
        self.lock_key = key + ":lock"
        self.fetch = fetch
        self.margin_s = margin_s
        self.lock_timeout_s = lock_timeout_s

    def get(self) -> str:
        token = self.r.get(self.key)  # the cached token: a string only this class keeps
        if token:
            return str(token)
        me = new_token()
        try:
            acquired = self.locks.wait_take(self.lock_key, me, self.lock_timeout_s,
                                            self.lock_timeout_s + 5)
        except redis.RedisError as exc:
            raise RetryLater("cannot take the MTS token lock", provider=PROVIDER) from exc
        if not acquired:
            raise RetryLater("another worker is still fetching the MTS token",
                             provider=PROVIDER)
        try:
            token = self.r.get(self.key)  # refreshed while we waited? (only this class keeps it)
            if token:
                return str(token)
            token, expires_in_s = self.fetch()
            keep_s = expires_in_s - min(self.margin_s, expires_in_s / 4)
            self.r.set(self.key, token, px=max(1, int(keep_s * 1000)))  # the cache, as above
            return token
        finally:
            # False when it expired meanwhile: the token is stored all the same
            self.locks.release(self.lock_key, me)

    def invalidate(self, token: str) -> None:
        """Forget ``token`` if it is still the cached one (so a burst of 401s refreshes once)."""
        self.locks.release(self.key, token)


# --- the provider --------------------------------------------------------------------------


class MtsRest:
    def __init__(self, account: Account, ctx: ProviderContext, *,
                 client: httpx.Client | None = None) -> None:
        self.account = account
        self.opts = account_options(MtsRestAccountOptions, account)
        self.poll_plan = CheckPlan(self.opts.first_poll_s, self.opts.max_poll_interval_s)
        self.url = (account.base_urls[0] if account.base_urls else DEFAULT_URL).rstrip("/")
        self.client_id = account.secret("client_id")
        self.client = client or httpx.Client(
            timeout=httpx.Timeout(account.timeout_s, connect=min(5.0, account.timeout_s)),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))
        self.tokens = TokenCache(ctx.redis,
                                 Keys(ctx.settings.namespace).oauth_token(PROVIDER,
                                                                          self.client_id),
                                 self._fetch_token, self.opts.token_refresh_margin_s)

    # --- OAuth
    def _fetch_token(self) -> tuple[str, float]:
        data = {"grant_type": "client_credentials", "client_id": self.client_id,
                "client_secret": self.account.secret("client_secret")}
        try:
            resp = self.client.post(self.url + TOKEN_PATH, data=data)
        except httpx.TransportError as exc:
            raise RetryLater("MTS token endpoint unreachable", provider=PROVIDER) from exc
        if resp.status_code in (400, 401, 403):
            raise AccountProblem("MTS refused the client credentials",
                                 code=f"http {resp.status_code}", provider=PROVIDER,
                                 alert="credentials")
        if resp.status_code != 200:
            raise RetryLater(f"MTS token endpoint answered HTTP {resp.status_code}",
                             provider=PROVIDER)
        try:
            body = resp.json()
            token = body["access_token"]
            if not isinstance(token, str) or not token:
                raise ValueError("empty access_token")
            expires_in = float(body.get("expires_in") or DEFAULT_TOKEN_TTL_S)
        except (ValueError, KeyError, TypeError) as exc:
            raise RetryLater("MTS token answer is unreadable", provider=PROVIDER) from exc
        log.info("MTS token fetched for client %s…, valid %.0f s", self.client_id[:4], expires_in)
        return token, expires_in

    def _authorised(self, method: str, path: str, pace: Pacing | None = None,
                    **kw: Any) -> httpx.Response:
        """One request with the shared token; on 401 one new token and exactly one retry
        (each waits for its own pacing slot when ``pace`` is given)."""
        token = self.tokens.get()
        resp = self.client.request(method, self.url + path, extensions=wire_extensions(pace),
                                   headers={"Authorization": f"Bearer {token}"}, **kw)
        if resp.status_code != 401:
            return resp
        self.tokens.invalidate(token)
        token = self.tokens.get()
        resp = self.client.request(method, self.url + path, extensions=wire_extensions(pace),
                                   headers={"Authorization": f"Bearer {token}"}, **kw)
        if resp.status_code == 401:
            raise AccountProblem("MTS refused a freshly issued token", code="http 401",
                                 provider=PROVIDER, alert="credentials")
        return resp

    # --- protocol
    def body_of(self, msg: Outgoing) -> dict[str, Any]:
        validity = msg.validity_min or (self.opts.promotional_validity_min
                                        if msg.kind == "promotional"
                                        else self.opts.transactional_validity_min)
        body: dict[str, Any] = {"phone": msg.phone, "text": msg.text, "validity": validity}
        if msg.sender:
            body["sender"] = msg.sender
        return body

    def send(self, msg: Outgoing, pace: Pacing | None = None) -> Submitted:
        if not re.fullmatch(r"\d{10,15}", msg.phone):
            raise Permanent("invalid phone format (checked before sending)", code="1",
                            provider=PROVIDER, rejected=True)
        try:
            resp = self._authorised("POST", SEND_PATH, pace, json=self.body_of(msg))
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise RetryLater("MTS API unreachable", provider=PROVIDER,
                             delay_s=self.opts.retry_delay_s) from exc
        except httpx.TransportError as exc:
            raise OutcomeUnknown("MTS did not answer the send", provider=PROVIDER) from exc
        if resp.status_code == 429:
            raise SlowDown("MTS answered HTTP 429", code="http 429", provider=PROVIDER,
                           delay_s=_retry_after(resp) or self.opts.slow_down_delay_s)
        if resp.status_code >= 500:
            raise RetryLater(f"MTS answered HTTP {resp.status_code}",
                             code=f"http {resp.status_code}", provider=PROVIDER,
                             delay_s=self.opts.retry_delay_s)
        if resp.status_code == 403:
            raise AccountProblem("MTS forbids this client (HTTP 403)", code="http 403",
                                 provider=PROVIDER, alert="forbidden")
        if resp.status_code != 200:
            raise Permanent(f"MTS refused the request (HTTP {resp.status_code})",
                            code=f"http {resp.status_code}", provider=PROVIDER, rejected=True)
        try:
            ans = parse_send_answer(resp.text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise OutcomeUnknown("MTS answered the send with something unreadable",
                                 provider=PROVIDER) from exc
        if ans.error_code is not None:
            raise send_error(ans, self.opts.slow_down_delay_s)
        assert ans.message_id is not None
        return Submitted(provider_id=ans.message_id, parts=msg.parts)

    def lookup(self, msg: Outgoing) -> StatusReport | None:
        # the API cannot find a message by a reference of ours; with an id we can ask
        if not msg.provider_id:
            raise NoLookup("MTS cannot be asked whether it took a message whose answer (and "
                           "id) was lost", provider=PROVIDER,
                           on_lost_answer=self.opts.on_lost_answer)
        try:
            return self.status(msg)
        except Permanent as exc:
            if exc.code == "http 404":  # an answer: MTS has no such message
                return None
            raise

    def status(self, msg: Outgoing) -> StatusReport:
        if not msg.provider_id:
            return StatusReport(status=Status.UNKNOWN, raw="", extra={"reason": "no MTS id"})
        try:
            resp = self._authorised("GET", STATUS_PATH.format(id=msg.provider_id))
        except httpx.TransportError as exc:
            raise RetryLater("MTS did not answer the status request", provider=PROVIDER) \
                from exc
        if resp.status_code == 404:
            raise Permanent("MTS has no such message", code="http 404", provider=PROVIDER)
        if resp.status_code != 200:
            raise RetryLater(f"MTS answered the status request with HTTP {resp.status_code}",
                             code=f"http {resp.status_code}", provider=PROVIDER)
        try:
            return status_report(parse_status_answer(resp.text))
        except (ValueError, UnicodeDecodeError) as exc:
            raise RetryLater("MTS answered a status request with something unreadable",
                             provider=PROVIDER) from exc

    def balance(self) -> Balance:
        raise ProviderError("MTS SMS Pro's API has no balance request; see the MTS personal "
                            "account", provider=PROVIDER)

    def close(self) -> None:
        self.client.close()


def _retry_after(resp: httpx.Response) -> float | None:
    try:
        return float(resp.headers.get("retry-after", ""))
    except ValueError:
        return None

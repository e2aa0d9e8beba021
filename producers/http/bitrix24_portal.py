"""Bitrix24 (cloud, or box with REST): Gonets as an SMS provider of the portal -- the
portal side: installations, the REST client with its OAuth refresh, and the status reporter
the callbacks dispatcher calls (the handler the portal posts to is ``bitrix24.py``).

How it fits together (Bitrix24 REST: ``messageservice.sender.add``,
``messageservice.sender.list``, ``messageservice.message.status.update``; OAuth 2.0 at
``oauth.bitrix.info``):

1. ``gonets bitrix24 install`` (cli/bitrix24.py) exchanges the application's authorization
   code for tokens, registers the sender with ``messageservice.sender.add`` (``CODE``,
   ``TYPE=SMS``, ``HANDLER`` = this API's ``/v1/integrations/bitrix24/<producer>``,
   ``NAME``) and stores the installation below.
2. The portal POSTs each message to the handler (form-encoded: ``message_id``,
   ``message_to``, ``message_body``, ``properties[...]``, ``auth[domain]``,
   ``auth[access_token]``, ``auth[application_token]``, ``auth[member_id]``...).  The handler
   checks ``auth[application_token]`` against the stored one (its SHA-256; compared in
   constant time), and ``domain``/``member_id`` against the installation, then queues the SMS
   for the producer with Bitrix's ``message_id`` as the idempotency key: a portal retrying
   the same message gets the same Gonets id, never a second SMS.
   The application token is not known at install time (the portal hands it out only with
   its calls), so the first call binds it, and only after proving itself: its access token
   must list our sender code through ``messageservice.sender.list`` on the *stored* portal
   (never on a domain taken from the request).
3. The callbacks dispatcher (producers/http/callbacks.py) reports every status change of
   such a message to ``https://<portal>/rest/messageservice.message.status.update``, in order
   and once per Bitrix status, refreshing the OAuth token when the portal says
   ``expired_token`` (or before, when it is past its ``expires_in``).

Keys:

    ns:b24:<producer>        hash    portal, member_id, code, handler, client_id /
                                     client_secret (references: env:VAR or file:/path),
                                     app_token_sha256, access_token, refresh_token,
                                     expires_ms (the portal's OAuth tokens: they are the
                                     installation's state, renewed by refresh, not settings)
    ns:b24:lock:<producer>   string  one token refresh at a time (refresh tokens are single-use)
    ns:b24:done:<msg id>     set     Bitrix statuses already reported for the message

Status mapping (Gonets -> Bitrix24 ``STATUS``): see ``STATUS_MAP``.  ``deferred`` (held by a
traffic rule after being queued) and ``unknown`` (the provider can no longer say) are not
reported: Bitrix has no status for them, and the portal keeps the last one it was told.

The portal's address is always ``https://<portal>/rest/...``.  Tests reach a stand-in over
loopback by giving this module an httpx transport (``set_transport_for_tests``); no setting or
environment variable can change the scheme or host, so production cannot be pointed
elsewhere by configuration.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from typing import Any

import httpx

from core.contracts import Status
from core.errors import ConfigError
from core.locks import new_token
from core.settings import resolve_secret
from core.store import Store, now_ms

log = logging.getLogger("gonets.bitrix24")

OAUTH_URL = "https://oauth.bitrix.info/oauth/token/"
#: a portal's host name, e.g. ``shop.bitrix24.by`` or a box's ``crm.example.com[:8443]``
PORTAL = re.compile(r"^(?=.{1,253}(:\d{1,5})?$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+(?::\d{1,5})?$")

#: Gonets status -> Bitrix24 STATUS (None: not reported)
STATUS_MAP: dict[Status, str | None] = {
    Status.QUEUED: "queued",
    Status.DEFERRED: None,
    Status.SUBMITTED: "sent",
    Status.DELIVERED: "delivered",
    Status.FAILED: "undelivered",
    Status.EXPIRED: "undelivered",
    Status.REJECTED: "failed",
    Status.UNKNOWN: None,
}

#: refresh this long before the portal's ``expires_in`` runs out
EARLY_REFRESH_MS = 60_000
#: a token refresh holds its lock this long at most (and a second refresher waits as long)
REFRESH_LOCK_TTL_S = 15.0

_transport: httpx.BaseTransport | None = None


def set_transport_for_tests(transport: httpx.BaseTransport | None) -> None:
    """Route every portal and OAuth request through ``transport`` (tests only)."""
    global _transport
    _transport = transport


def http_client(timeout_s: float = 10.0) -> httpx.Client:
    return httpx.Client(timeout=timeout_s, follow_redirects=False, transport=_transport,
                        headers={"User-Agent": "gonets-bitrix24/1"})


def sender_code(producer: str) -> str:
    """The ``CODE`` of the producer's sender on the portal (a-z 0-9 . - _)."""
    return "gonets_" + re.sub(r"[^A-Za-z0-9._-]", "_", producer)


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def resolve_ref(ref: str, what: str) -> str:
    """A credential reference (``env:VAR`` or ``file:/path``) resolved now."""
    return resolve_secret(ref, f"bitrix24 {what}")


# --- errors ----------------------------------------------------------------------------

class PortalError(Exception):
    """The portal (or Bitrix's OAuth server) answered with an error; ``code`` is its
    ``error``; ``retry`` says whether the same call may work later (5xx, network)."""

    def __init__(self, code: str, detail: str = "", *, retry: bool = False) -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail
        self.retry = retry


# --- the installation --------------------------------------------------------------------

@dataclass
class Installation:
    producer: str
    portal: str
    member_id: str
    code: str
    handler: str
    client_id: str
    client_secret: str
    access_token: str = ""
    refresh_token: str = ""
    expires_ms: int = 0
    app_token_sha256: str = ""


class Installations:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.r = store.r  # the installation store: b24 keys

    def key(self, producer: str) -> str:
        return self.store.keys.b24(producer)

    def save(self, inst: Installation) -> None:
        """Store the installation; a new one (a reinstall) binds its application token anew."""
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(self.key(inst.producer))
        pipe.hset(self.key(inst.producer), mapping={
            "portal": inst.portal, "member_id": inst.member_id, "code": inst.code,
            "handler": inst.handler, "client_id": inst.client_id,
            "client_secret": inst.client_secret, "access_token": inst.access_token,
            "refresh_token": inst.refresh_token, "expires_ms": str(inst.expires_ms)})
        if inst.app_token_sha256:
            pipe.hset(self.key(inst.producer), "app_token_sha256", inst.app_token_sha256)
        pipe.execute()

    def load(self, producer: str) -> Installation | None:
        h = {_text(k): _text(v) for k, v in self.r.hgetall(self.key(producer)).items()}
        if not h or not h.get("portal"):
            return None
        return Installation(
            producer=producer, portal=h["portal"], member_id=h.get("member_id", ""),
            code=h.get("code", ""), handler=h.get("handler", ""),
            client_id=h.get("client_id", ""), client_secret=h.get("client_secret", ""),
            access_token=h.get("access_token", ""), refresh_token=h.get("refresh_token", ""),
            expires_ms=int(h.get("expires_ms") or 0),
            app_token_sha256=h.get("app_token_sha256", ""))

    def set_tokens(self, producer: str, tokens: dict[str, Any]) -> None:
        access, refresh, expires_ms = _token_fields(tokens)
        self.r.hset(self.key(producer), mapping={  # the installation store: b24 keys
            "access_token": access, "refresh_token": refresh, "expires_ms": expires_ms})

    def bind_app_token(self, producer: str, token: str) -> bool:
        """Store the application token's digest unless one is stored already."""
        # the installation store: b24 keys
        return bool(self.r.hsetnx(self.key(producer), "app_token_sha256", sha256_hex(token)))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _token_fields(tokens: dict[str, Any]) -> tuple[str, str, str]:
    """(access token, refresh token, expiry in ms) of an OAuth answer."""
    try:
        access = str(tokens["access_token"])
        refresh = str(tokens["refresh_token"])
        expires_in = int(tokens.get("expires_in") or 3600)
    except (KeyError, TypeError, ValueError):
        raise PortalError("bad_token_answer", "the OAuth answer has no tokens") from None
    return access, refresh, str(now_ms() + expires_in * 1000)


# --- the REST client -----------------------------------------------------------------------

def _answer(resp: httpx.Response) -> Any:
    """The JSON of a REST/OAuth answer, or PortalError."""
    try:
        data = resp.json()
    except ValueError:
        data = None
    if resp.status_code >= 500 or resp.status_code == 429:
        raise PortalError(f"http_{resp.status_code}", "the portal is unavailable", retry=True)
    if isinstance(data, dict) and data.get("error"):
        raise PortalError(str(data["error"]), str(data.get("error_description") or ""))
    if resp.status_code >= 400 or not isinstance(data, dict):
        raise PortalError(f"http_{resp.status_code}", "unexpected answer")
    return data


def oauth(client: httpx.Client, params: dict[str, str]) -> dict[str, Any]:
    """One call of Bitrix's OAuth server (``grant_type`` authorization_code or refresh_token)."""
    try:
        resp = client.get(OAUTH_URL, params=params)
    except httpx.HTTPError as exc:
        raise PortalError("network", type(exc).__name__, retry=True) from exc
    data: dict[str, Any] = _answer(resp)
    return data


class Portal:
    """Calls the REST methods of one installation's portal, renewing its token as needed."""

    def __init__(self, installs: Installations, producer: str,
                 client: httpx.Client | None = None) -> None:
        self.installs = installs
        self.producer = producer
        self.client = client or http_client()

    def _inst(self) -> Installation:
        inst = self.installs.load(self.producer)
        if inst is None:
            raise PortalError("not_installed", f"no Bitrix24 installation for {self.producer}")
        return inst

    def rest_url(self, portal: str, method: str) -> str:
        return f"https://{portal}/rest/{method}.json"

    def call(self, method: str, params: dict[str, Any], *,
             access_token: str | None = None) -> Any:
        """``method`` with ``params``; with ``access_token`` (someone else's: no refresh)."""
        inst = self._inst()
        if access_token is not None:
            return self._post(inst.portal, method, params, access_token)
        if inst.expires_ms and inst.expires_ms - EARLY_REFRESH_MS < now_ms():
            inst = self.refresh(inst)
        try:
            return self._post(inst.portal, method, params, inst.access_token)
        except PortalError as exc:
            if exc.code not in ("expired_token", "invalid_token"):
                raise
        inst = self.refresh(inst)
        return self._post(inst.portal, method, params, inst.access_token)

    def _post(self, portal: str, method: str, params: dict[str, Any], token: str) -> Any:
        try:
            resp = self.client.post(self.rest_url(portal, method), data={**params, "auth": token})
        except httpx.HTTPError as exc:
            raise PortalError("network", type(exc).__name__, retry=True) from exc
        return _answer(resp).get("result")

    def refresh(self, seen: Installation) -> Installation:
        """New tokens; one refresher at a time, and none when another just refreshed."""
        locks = self.installs.store.locks
        lock = self.installs.store.keys.b24_lock(self.producer)
        mine = new_token()
        if not locks.wait_take(lock, mine, REFRESH_LOCK_TTL_S, REFRESH_LOCK_TTL_S):
            raise PortalError("refresh_busy", "another token refresh is stuck", retry=True)
        try:
            inst = self._inst()
            if inst.access_token != seen.access_token:  # someone else refreshed meanwhile
                return inst
            tokens = oauth(self.client, {
                "grant_type": "refresh_token",
                "client_id": resolve_ref(inst.client_id, "client_id"),
                "client_secret": resolve_ref(inst.client_secret, "client_secret"),
                "refresh_token": inst.refresh_token})
            self.installs.set_tokens(self.producer, tokens)
            log.info("bitrix24 %s: OAuth token renewed", self.producer)
            return self._inst()
        finally:
            locks.release(lock, mine)  # only if still ours


# --- reporting statuses (called by the callbacks dispatcher) -------------------------------

class Reporter:
    """Sends one status change of a Bitrix24 message to its portal."""

    def __init__(self, store: Store, client: httpx.Client | None = None) -> None:
        self.store = store
        self.installs = Installations(store)
        self.client = client or http_client()

    def done_key(self, msg_id: str) -> str:
        return self.store.keys.b24_done(msg_id)

    def deliver(self, producer: str, b24_id: str, msg_id: str, status: str) -> tuple[bool, str]:
        """(done with it, why not): False means "try again later"."""
        try:
            b24_status = STATUS_MAP[Status(status)]
        except (ValueError, KeyError):
            return True, "unknown status"
        if b24_status is None:
            return True, "not reported"
        done = self.done_key(msg_id)
        if self.store.r.sismember(done, b24_status):  # the installation store: b24 keys
            return True, "reported already"
        inst = self.installs.load(producer)
        if inst is None:
            log.warning("bitrix24 %s: status of %s not reported: the producer has no "
                        "installation (uninstalled?)", producer, msg_id)
            return True, "not installed"
        try:
            Portal(self.installs, producer, self.client).call(
                "messageservice.message.status.update",
                {"CODE": inst.code, "MESSAGE_ID": b24_id, "STATUS": b24_status})
        except PortalError as exc:
            if exc.retry or exc.code in ("expired_token", "invalid_token", "invalid_grant",
                                         "refresh_busy", "QUERY_LIMIT_EXCEEDED"):
                return False, exc.code
            log.warning("bitrix24 %s: the portal refused status %s of %s: %s; not retried",
                        producer, b24_status, msg_id, exc.code)
            return True, exc.code
        except ConfigError as exc:
            log.error("bitrix24 %s: %s", producer, exc)
            return False, "config"
        pipe = self.store.r.pipeline(transaction=True)  # the installation store: b24 keys
        pipe.sadd(done, b24_status)
        pipe.expire(done, self.store.retention_s)
        pipe.execute()
        return True, "reported"



def dumps_installation(inst: Installation) -> str:
    """The installation without tokens (for ``gonets bitrix24 install`` to print)."""
    return json.dumps({"producer": inst.producer, "portal": inst.portal, "code": inst.code,
                       "handler": inst.handler, "member_id": inst.member_id,
                       "client_id": inst.client_id, "client_secret": inst.client_secret},
                      indent=2)

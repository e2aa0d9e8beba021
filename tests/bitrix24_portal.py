"""A Bitrix24 portal and its OAuth server, as far as Gonets uses them, for the tests.

Written from Bitrix24's public REST documentation (dev.1c-bitrix.ru/rest_help and
apidocs.bitrix24.com), covering exactly:

- ``GET https://oauth.bitrix.info/oauth/token/`` with ``grant_type=authorization_code``
  (``code``) or ``grant_type=refresh_token`` (``refresh_token``), plus ``client_id`` and
  ``client_secret``: answers ``access_token``, ``refresh_token``, ``expires_in``,
  ``member_id``, ``domain``...; a refresh token works once; errors are
  ``{"error": "invalid_grant"|"invalid_client", "error_description": ...}``.
- ``POST https://<portal>/rest/<method>.json`` with the form field ``auth`` = access token:
  ``{"result": ...}``; an expired token is ``401 {"error": "expired_token"}``, an unknown one
  ``401 {"error": "invalid_token"}``.
- ``messageservice.sender.add`` (``CODE``, ``TYPE``, ``HANDLER``, ``NAME``),
  ``messageservice.sender.list`` (the codes this application registered),
  ``messageservice.sender.delete`` (``CODE``),
  ``messageservice.message.status.update`` (``CODE``, ``MESSAGE_ID``, ``STATUS`` one of
  queued, sent, delivered, undelivered, failed; anything else is
  ``400 ERROR_MESSAGE_STATUS_INCORRECT``).

Fault switches: ``expire_token()`` (the next REST call gets ``expired_token``),
``fail_next(n)`` (the next n REST calls answer 503).

``LoopbackTransport`` sends the https requests Gonets makes to this server over loopback
http, recording the scheme and host each was meant for.
"""

from __future__ import annotations

import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

from tests.support import shut_down

STATUSES = {"queued", "sent", "delivered", "undelivered", "failed"}


class Portal:
    def __init__(self, domain: str, client_id: str, client_secret: str,
                 member_id: str = "a1b2c3d4e5") -> None:
        self.domain = domain
        self.client_id = client_id
        self.client_secret = client_secret
        self.member_id = member_id
        self.application_token = secrets.token_hex(16)
        self.lock = threading.Lock()
        self.codes = {"good-code"}
        self.access_token = ""
        self.refresh_token = ""
        self.expired = False
        self.fail_left = 0
        self.senders: dict[str, dict[str, str]] = {}
        #: (MESSAGE_ID, STATUS) in arrival order, only calls that were answered with success
        self.status_updates: list[tuple[str, str]] = []
        self.refreshes = 0
        self.calls: list[str] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer._dispatch(self, "GET")

            def do_POST(self) -> None:
                outer._dispatch(self, "POST")

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        shut_down(self.server)
        self.server.server_close()

    # --- switches
    def expire_token(self) -> None:
        with self.lock:
            self.expired = True

    def fail_next(self, n: int) -> None:
        with self.lock:
            self.fail_left = n

    def statuses(self, b24_id: str) -> list[str]:
        with self.lock:
            return [s for i, s in self.status_updates if i == b24_id]

    # --- serving
    def _issue(self) -> dict[str, Any]:
        self.access_token = secrets.token_hex(16)
        self.refresh_token = secrets.token_hex(16)
        self.expired = False
        return {"access_token": self.access_token, "refresh_token": self.refresh_token,
                "expires_in": 3600, "expires": 0, "scope": "messageservice",
                "domain": "oauth.bitrix.info", "server_endpoint": "https://oauth.bitrix.info/rest/",
                "client_endpoint": f"https://{self.domain}/rest/", "member_id": self.member_id,
                "status": "L", "user_id": 1}

    def _dispatch(self, h: BaseHTTPRequestHandler, method: str) -> None:
        host = h.headers.get("X-Test-Meant-For", "")
        url = urlsplit(h.path)
        body = h.rfile.read(int(h.headers.get("content-length") or 0)) if method == "POST" \
            else b""
        with self.lock:
            if host == "https://oauth.bitrix.info" and url.path == "/oauth/token/":
                code, answer = self._oauth(dict(parse_qsl(url.query)))
            elif host == f"https://{self.domain}" and url.path.startswith("/rest/"):
                params = dict(parse_qsl(body.decode()))
                code, answer = self._rest(url.path[len("/rest/"):].removesuffix(".json"), params)
            else:
                code, answer = 404, {"error": "NOT_FOUND", "error_description": host}
        raw = json.dumps(answer).encode()
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(raw)))
        h.end_headers()
        h.wfile.write(raw)

    def _oauth(self, q: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if q.get("client_id") != self.client_id or q.get("client_secret") != self.client_secret:
            return 401, {"error": "invalid_client", "error_description": "bad client"}
        if q.get("grant_type") == "authorization_code" and q.get("code") in self.codes:
            self.codes.discard(q["code"])
            return 200, self._issue()
        if q.get("grant_type") == "refresh_token" and q.get("refresh_token") and \
                q["refresh_token"] == self.refresh_token:
            self.refreshes += 1
            return 200, self._issue()
        return 400, {"error": "invalid_grant", "error_description": "bad code or token"}

    def _rest(self, method: str, p: dict[str, str]) -> tuple[int, dict[str, Any]]:
        self.calls.append(method)
        if self.fail_left > 0:
            self.fail_left -= 1
            return 503, {"error": "INTERNAL_SERVER_ERROR", "error_description": "try later"}
        if not p.get("auth") or p["auth"] != self.access_token:
            return 401, {"error": "invalid_token", "error_description": "unknown token"}
        if self.expired:
            return 401, {"error": "expired_token",
                         "error_description": "The access token provided has expired."}
        if method == "messageservice.sender.add":
            if p.get("TYPE") != "SMS" or not p.get("CODE") or not p.get("HANDLER"):
                return 400, {"error": "ERROR_ARGUMENT", "error_description": "CODE/TYPE/HANDLER"}
            if p["CODE"] in self.senders:
                return 400, {"error": "ERROR_HANDLER_ALREADY_INSTALLED",
                             "error_description": "Handler already installed"}
            self.senders[p["CODE"]] = {k: p.get(k, "") for k in ("HANDLER", "NAME", "TYPE")}
            return 200, {"result": True}
        if method == "messageservice.sender.list":
            return 200, {"result": sorted(self.senders)}
        if method == "messageservice.sender.delete":
            self.senders.pop(p.get("CODE", ""), None)
            return 200, {"result": True}
        if method == "messageservice.message.status.update":
            if p.get("CODE") not in self.senders:
                return 400, {"error": "ERROR_HANDLER_NOT_FOUND", "error_description": "no"}
            if p.get("STATUS") not in STATUSES:
                return 400, {"error": "ERROR_MESSAGE_STATUS_INCORRECT",
                             "error_description": "Message status incorrect!"}
            self.status_updates.append((p.get("MESSAGE_ID", ""), p["STATUS"]))
            return 200, {"result": True}
        return 404, {"error": "ERROR_METHOD_NOT_FOUND", "error_description": method}

    def message_form(self, message_id: str, to: str, text: str,
                     application_token: str | None = None, domain: str | None = None,
                     access_token: str | None = None) -> dict[str, str]:
        """What the portal POSTs to a sender's HANDLER (form fields)."""
        return {"message_id": message_id, "message_to": to, "message_body": text,
                "module_id": "crm", "properties[sender]": "",
                "auth[access_token]": access_token or self.access_token, "auth[expires_in]": "3600",
                "auth[domain]": domain or self.domain, "auth[member_id]": self.member_id,
                "auth[application_token]": application_token or self.application_token,
                "auth[status]": "L", "auth[user_id]": "1"}


class LoopbackTransport(httpx.HTTPTransport):
    """Sends every request to ``127.0.0.1:<port>`` over http, saying where it was meant for."""

    def __init__(self, port: int) -> None:
        super().__init__()
        self.port = port

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        meant = f"{request.url.scheme}://{request.url.host}"
        if request.url.port:
            meant += f":{request.url.port}"
        request.headers["X-Test-Meant-For"] = meant
        request.url = request.url.copy_with(scheme="http", host="127.0.0.1", port=self.port)
        return super().handle_request(request)

"""Bitrix24: the handler the portal posts each message to
(``POST /v1/integrations/bitrix24/<producer>``).

How the integration fits together, its keys and its status mapping: ``bitrix24_portal.py``.
"""

from __future__ import annotations

import hmac
import logging
import re
from typing import Any
from urllib.parse import parse_qsl

from starlette.routing import Route

from core.errors import ConfigError, InvalidInput
from producers.http.bitrix24_portal import (
    Installation,
    Installations,
    Portal,
    PortalError,
    sha256_hex,
)
from producers.http.framework import Api, Call, Reply
from producers.http.problem import ApiError

log = logging.getLogger("gonets.bitrix24")


# --- the handler the portal posts messages to ----------------------------------------------

def parse_form(body: bytes) -> dict[str, Any]:
    """A PHP-style form (``auth[domain]=...``) as nested dicts; InvalidInput if it is not one."""
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text),
                          max_num_fields=1000)
    except (UnicodeDecodeError, ValueError):
        raise InvalidInput("body", "not a form-encoded body") from None
    out: dict[str, Any] = {}
    for key, value in pairs:
        m = re.fullmatch(r"([^\[\]]+)((?:\[[^\[\]]*\])*)", key)
        if not m:
            continue
        path = [m.group(1), *re.findall(r"\[([^\[\]]*)\]", m.group(2))]
        node = out
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[path[-1]] = value
    return out


def _field(data: dict[str, Any], *path: str) -> str:
    node: Any = data
    for p in path:
        node = node.get(p) if isinstance(node, dict) else None
    if not isinstance(node, str) or not node:
        name = path[0] + "".join(f"[{p}]" for p in path[1:])
        raise ApiError(422, "missing", field=name)
    return node


class Bitrix24Routes:
    def __init__(self, api: Api) -> None:
        self.api = api
        self.installs = Installations(api.store)

    def handle(self, call: Call) -> Reply:
        producer = call.path_params["producer"]
        ctype = call.headers.get("content-type", "").split(";")[0].strip()
        if ctype == "application/json":
            data = call.json()
            if not isinstance(data, dict):
                raise ApiError(422, "a JSON object is required", field="body")
        else:
            try:
                data = parse_form(call.body)
            except InvalidInput as exc:
                raise ApiError(400, exc.reason, field=exc.field) from None
        token = _field(data, "auth", "application_token")
        inst = self.installs.load(producer) if len(producer) <= 64 else None
        if inst is None:
            raise ApiError(404, "no Bitrix24 installation for this producer "
                                "(gonets bitrix24 install)")
        self._authenticate(inst, data, token)
        b24_id = _field(data, "message_id")
        if len(b24_id) > 100:
            raise ApiError(422, "at most 100 characters", field="message_id")
        try:
            msg_id = self.api.producer.send_sms(
                _field(data, "message_to"), _field(data, "message_body"), producer=producer,
                # scoped to the producer by the producer API: "<producer>:bitrix24:<id>"
                idempotency_key=f"bitrix24:{b24_id}",
                integration=f"bitrix24:{b24_id}")
        except InvalidInput:
            # no record, so no status will follow: tell the portal now that it cannot go
            self._refused(inst, b24_id)
            raise
        return Reply(200, {"id": msg_id, "status": "queued"})

    def _refused(self, inst: Installation, b24_id: str) -> None:
        try:
            Portal(self.installs, inst.producer).call(
                "messageservice.message.status.update",
                {"CODE": inst.code, "MESSAGE_ID": b24_id, "STATUS": "failed"})
        except (PortalError, ConfigError) as exc:
            log.warning("bitrix24 %s: could not mark refused message %s failed on the "
                        "portal: %s", inst.producer, b24_id, exc)

    def _authenticate(self, inst: Installation, data: dict[str, Any], token: str) -> None:
        denied = ApiError(401, "the application token, domain or member_id is not this "
                               "producer's installation", field="auth")
        domain = _field(data, "auth", "domain")
        member = data.get("auth", {}).get("member_id") if isinstance(data.get("auth"),
                                                                     dict) else None
        if domain.lower() != inst.portal.lower() or \
                (inst.member_id and member is not None and member != inst.member_id):
            raise denied
        if inst.app_token_sha256:
            if not hmac.compare_digest(sha256_hex(token), inst.app_token_sha256):
                raise denied
            return
        # first call: bind its application token once its access token proves it is ours
        access = _field(data, "auth", "access_token")
        try:
            senders = Portal(self.installs, inst.producer).call(
                "messageservice.sender.list", {}, access_token=access)
        except PortalError as exc:
            if exc.retry:
                raise ApiError(503, "the portal could not be asked; try again",
                               headers={"Retry-After": "5"}) from None
            raise denied from None
        if not isinstance(senders, list) or inst.code not in senders:
            raise denied
        if not self.installs.bind_app_token(inst.producer, token):
            inst = self.installs.load(inst.producer) or inst
            if not hmac.compare_digest(sha256_hex(token), inst.app_token_sha256):
                raise denied
        log.info("bitrix24 %s: application token bound", inst.producer)


def routes(api: Api) -> list[Route]:
    r = Bitrix24Routes(api)
    return [api.route("/v1/integrations/bitrix24/{producer}", r.handle, methods=["POST"],
                      scope=None, json_body=False, name="bitrix24_handler")]


def openapi_paths(errors: dict[str, Any]) -> dict[str, Any]:
    form = {"type": "object", "required": ["message_id", "message_to", "message_body", "auth"],
            "properties": {
                "message_id": {"type": "string"}, "message_to": {"type": "string"},
                "message_body": {"type": "string"},
                "auth": {"type": "object", "properties": {
                    k: {"type": "string"} for k in ("domain", "access_token",
                                                    "application_token", "member_id")}}}}
    return {"/v1/integrations/bitrix24/{producer}": {
        "parameters": [{"name": "producer", "in": "path", "required": True,
                        "schema": {"type": "string", "maxLength": 64}}],
        "post": {
            "operationId": "bitrix24Handler",
            "summary": "The HANDLER of a Bitrix24 sender (messageservice.sender.add): the "
                       "portal posts each SMS here; authenticated by auth[application_token]",
            "security": [],
            "requestBody": {"required": True, "content": {
                "application/x-www-form-urlencoded": {"schema": form},
                "application/json": {"schema": form}}},
            "responses": {"200": {"description": "queued (the same message_id again: the same "
                                                 "id)", "content": {"application/json": {
                "schema": {"type": "object", "required": ["id", "status"], "properties": {
                    "id": {"type": "string"}, "status": {"type": "string"}}}}}},
                **errors}}}}



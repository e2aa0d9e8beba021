"""Consent routes: ``PUT``/``DELETE``/``GET /v1/consents/{phone}`` (scope ``consent``).

Opt-in for promotional SMS (producers/consent.py): consent belongs to the subscriber, not to
a producer, so every producer with the scope sees and changes the same record.  ``PUT``
records an opt-in and ``DELETE`` a withdrawal, each with the ``source`` it came from (JSON
body ``{"source": "web form"}``; for ``DELETE`` also ``?source=``).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from starlette.routing import Route

from producers.http.framework import Api, Call, Reply
from producers.http.models import ConsentIn
from producers.http.problem import ApiError, from_validation
from producers.http.render import iso


def consent_out(c: Any) -> dict[str, Any]:
    return {"phone": "+" + c.phone, "granted": c.granted, "source": c.source,
            "updated_at": iso(c.updated_ms),
            "history": [{"action": h.get("action", ""), "source": h.get("source", ""),
                         "at": iso(h.get("at_ms"))} for h in c.history]}


class ConsentRoutes:
    def __init__(self, api: Api) -> None:
        from producers import consent

        self.c = consent
        self.api = api

    def _source(self, call: Call, *, required: bool) -> str:
        if call.body:
            try:
                return ConsentIn.model_validate(call.json()).source
            except ValidationError as exc:
                raise from_validation(exc) from None
        src = call.query.get("source")
        if src:
            return src
        if required:
            raise ApiError(422, "say where the consent came from", field="source")
        return f"withdrawn through the HTTP API by {call.producer}"

    def _show(self, phone: str) -> Reply:
        got = self.c.get_consent(self.api.producer, phone)
        if got is None:
            raise ApiError(404, "no consent recorded for this number")
        return Reply(200, consent_out(got))

    def put(self, call: Call) -> Reply:
        phone = call.path_params["phone"]
        self.c.record_consent(self.api.producer, phone, source=self._source(call, required=True))
        return self._show(phone)

    def delete(self, call: Call) -> Reply:
        phone = call.path_params["phone"]
        self.c.withdraw_consent(self.api.producer, phone,
                                source=self._source(call, required=False))
        return self._show(phone)

    def get(self, call: Call) -> Reply:
        return self._show(call.path_params["phone"])


def routes(api: Api) -> list[Route]:
    r = ConsentRoutes(api)
    path = "/v1/consents/{phone}"
    return [api.route(path, r.put, methods=["PUT"], scope="consent", name="put_consent"),
            api.route(path, r.delete, methods=["DELETE"], scope="consent",
                      name="delete_consent"),
            api.route(path, r.get, methods=["GET"], scope="consent", name="get_consent")]

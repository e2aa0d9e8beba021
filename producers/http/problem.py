"""``application/problem+json`` answers (RFC 9457) and the one exception that carries them."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError
from starlette.responses import Response

#: ``type`` is ``urn:gonets:problem:<slug>``; the README lists the slugs
PROBLEM_TYPE = "urn:gonets:problem"

#: status -> (slug, title)
TITLES = {
    400: ("bad-request", "Malformed request"),
    401: ("unauthorized", "Missing or invalid token"),
    403: ("forbidden", "The token lacks the scope for this call"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    409: ("conflict", "Conflict"),
    413: ("too-large", "Request body too large"),
    415: ("unsupported-media-type", "Send JSON"),
    422: ("invalid-input", "Invalid input"),
    500: ("internal", "Internal error"),
    503: ("unavailable", "Temporarily unavailable"),
}


class ApiError(Exception):
    def __init__(self, status: int, detail: str, *, field: str | None = None,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.field = field
        self.headers = headers or {}
        self.extra = extra


def problem_body(status: int, detail: str, field: str | None = None,
                 **extra: Any) -> dict[str, Any]:
    slug, title = TITLES.get(status, ("error", "Error"))
    body: dict[str, Any] = {"type": f"{PROBLEM_TYPE}:{slug}", "title": title, "status": status,
                            "detail": detail}
    if field is not None:
        body["field"] = field
    body.update(extra)
    return body


def problem(status: int, detail: str, field: str | None = None,
            headers: dict[str, str] | None = None, **extra: Any) -> Response:
    return Response(json.dumps(problem_body(status, detail, field, **extra), ensure_ascii=False),
                    status_code=status, headers=headers,
                    media_type="application/problem+json")


def from_validation(exc: ValidationError, prefix: str = "") -> ApiError:
    """The first pydantic error as a 422 naming the field (``messages[3].to``)."""
    err = exc.errors()[0]
    return ApiError(422, _message(err), field=field_path(err["loc"], prefix))


def field_path(loc: tuple[Any, ...] | list[Any], prefix: str = "") -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


def _message(err: Any) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown field"
    if err["type"] == "missing":
        return "is required"
    return str(err["msg"])

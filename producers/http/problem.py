"""``application/problem+json`` answers (RFC 9457) and the one exception that carries them."""

from __future__ import annotations

import json
from collections.abc import Mapping
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
            headers: Mapping[str, str] | None = None, **extra: Any) -> Response:
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


#: pydantic error types in the API's own words ({…} from the error's context)
_WORDS = {
    "too_long": "at most {max_length} items (got {actual_length})",
    "too_short": "at least {min_length} items (got {actual_length})",
    "string_too_long": "at most {max_length} characters",
    "string_too_short": "at least {min_length} characters",
    "greater_than": "must be greater than {gt}",
    "greater_than_equal": "must be {ge} or more",
    "less_than": "must be less than {lt}",
    "less_than_equal": "must be {le} or less",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "list_type": "must be an array",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "literal_error": "must be {expected}",
    "enum": "must be {expected}",
    "json_invalid": "is not valid JSON",
    "string_pattern_mismatch": "has the wrong format",
    "datetime_parsing": "must be an ISO 8601 date-time, e.g. 2026-11-22T10:00:00Z",
    "datetime_type": "must be an ISO 8601 date-time, e.g. 2026-11-22T10:00:00Z",
    "url_parsing": "must be a URL",
    "url_type": "must be a URL",
    "url_scheme": "must be an http or https URL",
}


def _message(err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "is required"
    words = _WORDS.get(kind)
    if words is not None:
        try:
            return words.format(**(err.get("ctx") or {}))
        except (KeyError, IndexError, ValueError):
            pass
    msg = str(err["msg"])
    if msg.startswith(("Value error, ", "Assertion failed, ")):
        msg = msg.split(", ", 1)[1]
    # what is left of pydantic's own phrasing, in ours
    return (msg.replace("Input should be", "must be").replace(" after validation", "")
            .replace("Input ", "").replace("input ", ""))

"""Request and response shapes of the HTTP API, as pydantic models.

Requests are validated with these (strictly: no ``"5"`` for 5, unknown fields refused), then
by the producer itself (phone numbers, sender names, parts), so the HTTP API accepts exactly
what ``Producer.send_sms`` accepts.  The OpenAPI document (``openapi.py``) is generated from
the same models, so what is documented is what is checked.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from producers.validation import MAX_TEXT_CHARS

#: most messages in one ``POST /v1/sms/batch``
MAX_BATCH = 10_000


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SmsIn(_In):
    """One SMS: the fields of ``Producer.send_sms``."""

    to: str = Field(min_length=1, max_length=32, description="phone number; +375…, 8029…, 7…",
                    examples=["+375291234567"])
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS, examples=["Your code is 4711"])
    sender: str | None = Field(None, max_length=15, description="sender name; the account's "
                               "default when absent")
    account: str | None = Field(None, max_length=40, description="provider account; routed by "
                                "number prefix when absent")
    lane: Literal["urgent", "bulk"] = Field("bulk", description="urgent messages (codes) go "
                                            "before bulk mailings")
    kind: Literal["transactional", "promotional"] = "transactional"
    validity: int | None = Field(None, ge=1, le=1440, description="minutes the message may "
                                 "wait; 5–10 for codes")
    options: dict[str, Any] | None = Field(None, description="provider options, e.g. "
                                           "{\"translit\": 1} for SMSC")
    callback_url: str | None = Field(None, max_length=2000, description="every status change "
                                     "is POSTed here, signed (X-Gonets-Signature)")
    idempotency_key: str | None = Field(None, min_length=1, max_length=200,
                                        description="the same key within 24 h returns the "
                                        "first message's id instead of sending again")


class BatchIn(_In):
    # items are validated one by one (a bad item is an error in the answer, not a 422)
    messages: list[Any] = Field(min_length=1, max_length=MAX_BATCH,
                                description="each item is an SmsIn, validated on its own",
                                json_schema_extra={"items": {"$ref":
                                                             "#/components/schemas/SmsIn"}})


class Accepted(_Out):
    id: str
    status: Literal["queued"]


class ItemError(_Out):
    field: str
    detail: str


class BatchItem(_Out):
    index: int
    id: str | None = None
    duplicate_of: str | None = Field(
        None, description="set when nothing new was queued: this producer sent the same "
        "number, sender and text within the duplicate window (or the same idempotency_key); "
        "the id of that first message")
    error: ItemError | None = None


class BatchOut(_Out):
    accepted: int
    rejected: int
    results: list[BatchItem]


class Event(_Out):
    status: str
    at: str = Field(description="ISO 8601, UTC")
    reason: str | None = None
    provider_status: str | None = None
    error_code: str | None = None
    account: str | None = Field(None, description="the account it happened on: the one that "
                                "took the message, or the one a route moved it to")


class SmsOut(_Out):
    id: str
    status: Literal["queued", "deferred", "submitted", "delivered", "failed", "expired",
                    "rejected", "unknown"]
    account: str
    to: str
    sender: str | None = None
    lane: str
    kind: str
    parts: int
    encoding: str | None = None
    validity: int | None = None
    provider_id: str | None = None
    provider_status: str | None = None
    error_code: str | None = None
    reason: str | None = None
    waiting_reason: str | None = Field(None, description="why a message not yet sent waits "
                                       "(e.g. its account is paused: out of money); absent "
                                       "once it is sent")
    callback_url: str | None = None
    lost_answer: Literal["resent", "gave_up", "first_copy_taken"] | None = Field(
        None, description="an answer of the provider was lost and it cannot be asked about the "
        "message (MTS REST, SMS2): sent again (it may arrive twice), given up (status "
        "unknown), or the provider said the first copy went (README \"When an answer is "
        "lost\")")
    created_at: str
    updated_at: str
    history: list[Event] | None = None


class SmsPage(_Out):
    items: list[SmsOut]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null at "
                                    "the end")


class Problem(BaseModel):
    """RFC 9457 problem details."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    field: str | None = Field(None, description="the request field that is wrong")


# --- consent -----------------------------------------------------------------------------

class ConsentIn(_In):
    source: str = Field(min_length=1, max_length=200, description="where the consent (or its "
                        "withdrawal) came from: \"web form\", \"STOP reply\"…")


class ConsentEvent(_Out):
    action: str
    source: str
    at: str


class ConsentOut(_Out):
    phone: str
    granted: bool
    source: str
    updated_at: str
    history: list[ConsentEvent]


# --- MTS Money payments --------------------------------------------------------------------

class CheckIn(_In):
    phone: str = Field(min_length=1, max_length=32, description="an MTS Belarus number")
    account: str | None = Field(None, max_length=40, description="the bePaid account; the "
                                "only one when absent")
    wait_s: float | None = Field(None, ge=0, le=25, description="wait up to this long for the "
                                 "result (200 with it; 202 while still queued)")


class CheckOut(_Out):
    id: str
    status: str = Field(description="queued, done or error")
    phone: str
    account: str
    created_at: str
    result: str | None = Field(None, description="active, must_accept_terms, not_mts, "
                               "invalid_phone, refused")
    code: str | None = None
    message: str | None = None
    friendly_message: str | None = None
    reason: str | None = None
    error_code: str | None = None


class PaymentIn(_In):
    phone: str = Field(min_length=1, max_length=32)
    amount: int = Field(ge=1, description="minor units: 1050 is 10.50 BYN")
    description: str = Field(min_length=1, max_length=255)
    currency: str = Field("BYN", min_length=3, max_length=3)
    customer_answer: Literal["accept", "decline"] | None = Field(
        None, description="the customer's answer to the MTS Money terms, when the check says "
        "they must be accepted")
    check_id: str | None = Field(None, max_length=64, description="a finished check of this "
                                 "number to reuse")
    account: str | None = Field(None, max_length=40)
    return_url: str | None = Field(None, max_length=2000)
    expired_at: str | None = Field(None, max_length=40, description="ISO 8601")
    test: bool | None = None
    idempotency_key: str | None = Field(None, min_length=1, max_length=200)
    callback_url: str | None = Field(None, max_length=2000, description="every status change "
                                     "is POSTed here, signed")


class PaymentOut(_Out):
    id: str
    status: str = Field(description="queued, pending, successful, failed, expired, rejected, "
                        "declined")
    account: str
    phone: str
    amount: int
    currency: str
    description: str
    test: bool
    created_at: str
    updated_at: str
    provider_status: str | None = None
    error_code: str | None = None
    reason: str | None = None
    uid: str | None = None
    check_result: str | None = None
    customer_answer: str | None = None
    callback_url: str | None = None
    expired_at: str | None = None
    history: list[Event] | None = None

"""Masking keeps ids whole (issue #14, "Log masking destroys ids"): log lines and Sentry events
(through the Sentry stand-in, tests/sentry_standin.py, over a real socket) keep message,
payment and stream ids as they are and still mask the phone numbers around them."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator

import phonenumbers
import pytest
from hypothesis import assume, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from core import observability
from core.observability.logs import JsonFormatter, TextFormatter
from core.observability.scrub import _scrub_str
from core.privacy import scrub_text
from tests.sentry_standin import SentryStandIn
from tests.support import poll_until

# ids whose digit runs the old masker took for phone numbers (the issue's own examples)
PAYMENT_ID = "82ba6191234567a02a9991234503db05b8"[:32]
MSG_ID = "3f9e2a375297654321b0c1d2e3f40516"
STREAM_ID = "1795123456775-0"
DASHED = "12345678-3752-9123-4567-000000000000"
PHONES = ("+375291234567", "375447654321", "+7 916 123-45-67", "89161234567")
LINE = (f"payment {PAYMENT_ID} for {PHONES[0]}, message {MSG_ID} to {PHONES[1]}; callback "
        f"{STREAM_ID} of {DASHED} (subscriber {PHONES[2]}, or {PHONES[3]})")


def _assert_kept_and_masked(out: str) -> None:
    for i in (PAYMENT_ID, MSG_ID, STREAM_ID, DASHED):
        assert i in out, out
    for p in PHONES:
        assert p not in out, out
    for tail in ("291234567", "447654321", "916 123-45", "9161234"):
        assert tail not in out, out
    assert "+375*******67" in out and "375*******21" in out  # masked, not dropped


@pytest.fixture
def gonets_log() -> Iterator[tuple[logging.Logger, io.StringIO, io.StringIO]]:
    as_json, as_text = io.StringIO(), io.StringIO()
    handlers = []
    for stream, fmt in ((as_json, JsonFormatter()), (as_text, TextFormatter())):
        h = logging.StreamHandler(stream)
        h.setFormatter(fmt)
        handlers.append(h)
    log = logging.getLogger("gonets.test-privacy")
    for h in handlers:
        log.addHandler(h)
    yield log, as_json, as_text
    for h in handlers:
        log.removeHandler(h)


def test_log_lines_keep_ids_and_mask_numbers(gonets_log) -> None:
    log, as_json, as_text = gonets_log
    log.warning("payment %s for %s, message %s to %s; callback %s of %s (subscriber %s, or %s)",
                PAYMENT_ID, PHONES[0], MSG_ID, PHONES[1], STREAM_ID, DASHED, PHONES[2],
                PHONES[3], extra={"payment_id": PAYMENT_ID, "phone": PHONES[1]})
    line = json.loads(as_json.getvalue())
    _assert_kept_and_masked(line["msg"])
    assert line["payment_id"] == PAYMENT_ID and line["phone"] == "37544*****21"
    _assert_kept_and_masked(as_text.getvalue())


def test_sentry_events_keep_ids_and_mask_numbers(redis_url) -> None:
    import sentry_sdk

    server = SentryStandIn()
    try:
        assert observability.init_sentry(server.dsn, role="worker", environment="test")
        log = logging.getLogger("gonets.test-privacy")
        log.setLevel(logging.INFO)
        log.info("callback %s for %s delivered", STREAM_ID, MSG_ID)  # a breadcrumb
        try:
            raise RuntimeError(LINE)
        except RuntimeError:
            log.exception("payment %s failed", PAYMENT_ID)
        poll_until(lambda: server.of_type("event"), 15, "the event")
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.init()
        observability._state["sentry"] = False
        logging.getLogger("gonets.test-privacy").setLevel(logging.NOTSET)
        server.stop()
    event = server.of_type("event")[0]
    _assert_kept_and_masked(event["exception"]["values"][-1]["value"])
    assert PAYMENT_ID in json.dumps(event["logentry"])
    crumbs = json.dumps(event["breadcrumbs"]["values"])
    assert STREAM_ID in crumbs and MSG_ID in crumbs
    raw = server.everything().decode()
    for p in ("291234567", "447654321"):
        assert p not in raw


IDS = st.one_of(
    st.uuids(version=4).map(lambda u: u.hex),  # message and payment ids
    st.uuids(version=4).map(str),
    st.tuples(st.integers(10**12, 4 * 10**12), st.integers(0, 10**6))
    .map(lambda t: f"{t[0]}-{t[1]}"),  # stream ids
    # times in ms from 2001 to 2033: 13 digits from 1, never a valid +1 number (NANP has 10);
    # a later time (3903500000000, 2093) can read as an Italian number
    st.integers(10**12, 2 * 10**12 - 1).map(str),
    st.integers(0, 2**31).map(str),  # sequence numbers, SMSC ids
    st.integers(10**15, 2**128).map(str),  # longer than any number
)


@hsettings(max_examples=400, deadline=None)
@given(ident=IDS, before=st.sampled_from(["", "id ", "payment ", "event=", "(", "/v1/sms/", "["]),
       after=st.sampled_from(["", " failed", ",", ")", ".", "]", "&x=1"]))
def test_any_id_survives_masking_unchanged(ident, before, after) -> None:
    text = f"{before}{ident}{after}"
    assert scrub_text(text) == text
    assert ident in _scrub_str(text)


@hsettings(max_examples=200, deadline=None)
@given(digits=st.text(alphabet="0123456789", min_size=7, max_size=7),
       ident=st.uuids(version=4).map(lambda u: u.hex))
def test_a_number_beside_an_id_is_masked_and_the_id_kept(digits, ident) -> None:
    phone = "37529" + digits  # a Belarus mobile number, written bare and with "+"
    assume(phonenumbers.is_valid_number(phonenumbers.parse("+" + phone)))
    out = scrub_text(f"{ident} +{phone} {ident}-0 {phone}")
    assert out.count(ident) == 2 and phone not in out


def test_uuid4_hex_ids_never_need_luck() -> None:
    # the case, deterministic: digit runs of phone length inside hex ids
    for _ in range(2000):
        ident = uuid.uuid4().hex
        assert scrub_text(f"payment {ident}") == f"payment {ident}"


def test_id_fields_keep_all_digit_ids_that_read_as_numbers() -> None:
    # an MTS or SMS2 id may be all digits and happen to be a valid number: by key it is an id
    out = observability.scrub({"provider_id": "79161234567", "payment_id": "375291234567",
                               "note": "to 79161234567"})
    assert out["provider_id"] == "79161234567" and out["payment_id"] == "375291234567"
    assert "79161234567" not in out["note"]

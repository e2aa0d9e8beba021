"""The day a send is counted under (``core.usage._day``, asked on every send and cached for the
day it last named) is always the UTC date of the instant asked about, in any order of asking:
across midnight, backwards, far apart."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from core import usage

# from 1970 to 2100, with instants on either side of a midnight at least as likely as any
instants = st.one_of(
    st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False),
    st.integers(min_value=0, max_value=47_480).flatmap(
        lambda day: st.floats(min_value=day * 86400 - 1e-3, max_value=day * 86400 + 1e-3)
        .filter(lambda t: t >= 0)))


@settings(max_examples=300)
@given(st.lists(instants, min_size=1, max_size=20))
def test_the_day_is_the_utc_date_of_every_instant_asked_about(ts: list[float]) -> None:
    for t in ts:
        assert usage._day(t) == datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%d"), t


def test_today_is_the_utc_date_now() -> None:
    before = datetime.now(tz=UTC).strftime("%Y-%m-%d")
    got = usage._day()
    after = datetime.now(tz=UTC).strftime("%Y-%m-%d")
    assert got in (before, after)

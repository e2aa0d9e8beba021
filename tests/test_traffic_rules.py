"""The traffic rules' building blocks on a real Redis: the GCRA reservation, the shared
slow-down, the flood counter, the sending window (property-tested) and their settings."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from core.errors import ConfigError
from core.settings import Account, Limits, load_settings
from core.store import redis_client
from workers.traffic.flood import FloodGuard
from workers.traffic.pacing import BULK_HORIZON_S, Pacer
from workers.traffic.window import SendWindow


def account(name: str = "acct", provider: str = "smsc_http", **limits: object) -> Account:
    return Account(name=name, provider=provider, limits=Limits(**limits))


@pytest.fixture
def r(redis_url: str):
    client = redis_client(redis_url)
    yield client
    client.close()


def test_every_part_books_its_own_slot_at_the_configured_spacing(r):
    pacer = Pacer(r, "t")
    acct = account(rate_per_s=10, pacing_jitter_ms=0)
    waits = []
    for parts in (1, 3, 1, 2):
        ok, wait_s, factor = pacer.try_reserve(acct, parts, urgent=True)
        assert ok and factor == 1.0
        waits.append(wait_s)
    # sends of a and b parts go (a + b - 1) slots apart: 0, 0.3, 0.6, 0.8
    for got, want in zip(waits, (0.0, 0.3, 0.6, 0.8), strict=True):
        assert got == pytest.approx(want, abs=0.03)


def test_tolerance_and_margin_widen_the_spacing(r):
    acct = account(rate_per_s=30, pacing_jitter_ms=15, pacing_margin_ms=10)
    assert Pacer.interval_s(acct) == pytest.approx(1.025 / 30)
    assert Pacer.interval_s(account(rate_per_s=30, pacing_jitter_ms=15, pacing_margin_ms=0)) \
        == pytest.approx(1.015 / 30)
    assert Pacer.tolerance_s(acct) == pytest.approx(0.015)


def test_bulk_does_not_book_beyond_the_horizon_but_urgent_does(r):
    pacer = Pacer(r, "t")
    acct = account(rate_per_s=5, pacing_jitter_ms=0)
    for _ in range(3):  # book 0.6 s ahead
        assert pacer.try_reserve(acct, 1, urgent=True)[0]
    ok, wait_s, _ = pacer.try_reserve(acct, 1, urgent=False)
    assert not ok and wait_s == pytest.approx(0.6 - BULK_HORIZON_S, abs=0.05)
    ok, wait_s, _ = pacer.try_reserve(acct, 1, urgent=True)
    assert ok and wait_s == pytest.approx(0.6, abs=0.05)


def test_acquire_returns_at_the_slot_and_gives_up_at_the_deadline(r):
    pacer = Pacer(r, "t")
    acct = account(rate_per_s=4, pacing_jitter_ms=0)
    t0 = time.time()
    first = pacer.acquire(acct, 1, urgent=False, deadline=t0 + 5)
    second = pacer.acquire(acct, 1, urgent=False, deadline=t0 + 5)
    assert first is not None and second is not None
    # slots are 1/rate apart; a slot woken up too late for (a loaded machine) is forfeited,
    # so the gap is a whole number of slots, never less than one
    gap = second.at - first.at
    assert gap >= 0.25 - 0.005
    assert abs(gap / 0.25 - round(gap / 0.25)) < 0.05
    assert time.time() >= second.at
    assert pacer.try_reserve(acct, 40, urgent=True)[0]  # books 20 s ahead
    assert pacer.acquire(acct, 1, urgent=True, deadline=time.time() + 0.2) is None


def test_slow_down_is_shared_cut_once_per_burst_and_climbs_back(r):
    a, b = (Pacer(r, "t", hold_s=0.3, recover_per_s=1.0, cooldown_s=0.2) for _ in range(2))
    assert a.factor("acct") == 1.0
    assert a.slow_down("acct") == (True, pytest.approx(0.7))
    assert b.slow_down("acct") == (False, pytest.approx(0.7))  # the same complaint: one cut
    assert b.factor("acct") == pytest.approx(0.7)  # another pod sees it
    _ok, wait_s, factor = b.try_reserve(account(rate_per_s=10, pacing_jitter_ms=0), 1, urgent=True)
    assert factor == pytest.approx(0.7)
    b.try_reserve(account(rate_per_s=10, pacing_jitter_ms=0), 1, urgent=True)
    # the second slot is 1/(10*0.7) s after the first
    _ok2, wait2, _ = b.try_reserve(account(rate_per_s=10, pacing_jitter_ms=0), 1, urgent=True)
    assert wait2 - wait_s == pytest.approx(2 / 7, abs=0.03)
    time.sleep(0.35)
    assert 0.7 <= a.factor("acct") <= 0.9  # held, then climbing ...
    time.sleep(0.4)
    # ... fast up to 90 % of the rate the provider complained at (1.0), slowly above it
    assert 0.9 <= a.factor("acct") < 0.97  # (slack for a late wake-up on a busy machine)
    ceiling = a.factor("acct")
    cut, factor = a.slow_down("acct")  # the provider complains again, at `ceiling`
    assert cut and factor == pytest.approx(0.7 * ceiling, abs=0.01)
    time.sleep(0.3 + 0.3)  # hold, then 0.3 s: fast up to 90 % of the ceiling, then crawling
    assert 0.9 * ceiling <= a.factor("acct") < 0.9 * ceiling + 0.07


def test_flood_rule_holds_the_next_message_until_a_gap(r):
    guard = FloodGuard(r, "t")
    http = account("one", "smsc_http", flood_max_messages=3, flood_gap_s=0.5)
    smpp = account("two", "smsc_smpp", flood_max_messages=3, flood_gap_s=0.5)
    mts = account("three", "mts_rest", flood_max_messages=3, flood_gap_s=0.5)
    assert [guard.admit(http, "375291234567") for _ in range(2)] == [0.0, 0.0]
    assert guard.admit(smpp, "375291234567") == 0.0  # same provider, other account: counts
    wait = guard.admit(http, "375291234567")
    assert 0.3 < wait <= 0.5
    assert guard.admit(smpp, "375291234567") > 0
    assert guard.admit(mts, "375291234567") == 0.0  # another provider has its own count
    assert guard.admit(http, "375290000000") == 0.0  # another number
    time.sleep(0.55)
    assert guard.admit(http, "375291234567") == 0.0  # the gap ended the burst


def test_flood_gaps_are_measured_between_the_sends_not_the_checks(r):
    guard = FloodGuard(r, "t")
    acct = account(flood_max_messages=1, flood_gap_s=0.5)
    assert guard.admit(acct, "375291234567", in_s=2.0) == 0.0  # goes out in 2 s
    wait = guard.admit(acct, "375291234567")  # the burst ends 0.5 s after that send
    assert 2.3 < wait <= 2.5


def test_window_waits_until_it_opens_and_wraps_midnight():
    w = SendWindow.parse("09:00-21:00", "Europe/Minsk")  # UTC+3, no DST
    at = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)  # 08:00 in Minsk
    assert w.wait_s(at) == 3600
    assert w.wait_s(at + timedelta(hours=2)) == 0
    assert w.wait_s(datetime(2026, 3, 2, 18, 30, tzinfo=UTC)) == 11.5 * 3600
    night = SendWindow.parse("22:00-06:00", "UTC")
    assert night.wait_s(datetime(2026, 3, 2, 23, 0, tzinfo=UTC)) == 0
    assert night.wait_s(datetime(2026, 3, 2, 7, 0, tzinfo=UTC)) == 15 * 3600


times = st.tuples(st.integers(0, 23), st.integers(0, 59), st.integers(0, 59))


@hsettings(max_examples=300, deadline=None)
@given(start=times, end=times, when=st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
    zone=st.sampled_from(["UTC", "Europe/Minsk", "Europe/Moscow", "Europe/Berlin"]))
def test_window_wait_lands_inside_it(start, end, when, zone):
    spec = "{:02d}:{:02d}:{:02d}-{:02d}:{:02d}:{:02d}".format(*start, *end)
    if start == end:
        with pytest.raises(ValueError):
            SendWindow.parse(spec, zone)
        return
    w = SendWindow.parse(spec, zone)
    wait = w.wait_s(when)
    assert 0 <= wait <= 25 * 3600
    if zone == "Europe/Berlin":
        # around a DST jump a window inside the skipped hour may need a second wait; a message
        # re-checks the window each time it comes back, so it still never goes outside it
        second = w.wait_s(when + timedelta(seconds=wait))
        assert w.wait_s(when + timedelta(seconds=wait + second)) == 0
        return
    # Belarus and Russia keep no DST: the wait ends exactly when the window opens
    if wait > 0:
        assert w.wait_s(when + timedelta(seconds=wait)) == 0
        assert w.wait_s(when + timedelta(seconds=wait) - timedelta(seconds=1)) > 0


@given(st.text(max_size=30))
def test_window_parser_refuses_garbage_with_value_error(spec):
    try:
        SendWindow.parse(spec, "UTC")
    except ValueError:
        pass


def test_bad_window_or_zone_in_the_config_names_the_key(tmp_path):
    for extra, word in (('send_window = "9-21"', "send_window"),
                        ('timezone = "Mars/Olympus"', "timezone")):
        cfg = tmp_path / "c.toml"
        cfg.write_text(f'[accounts.a]\nprovider = "smsc_http"\n[accounts.a.limits]\n{extra}\n')
        with pytest.raises(ConfigError) as err:
            load_settings({"GONETS_CONFIG": str(cfg)})
        assert word in str(err.value)

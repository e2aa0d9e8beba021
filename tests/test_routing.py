"""Routes in the config and the producer's choice of account (core/routing.py): which route
takes a message, errors that name the key, and new messages skipping a paused account."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core import routing
from core.errors import AccountProblem, ConfigError, InvalidInput
from core.settings import load_settings
from producers import Producer
from workers.runtime import Runtime, outgoing

ACCOUNTS = """
[accounts.mts]
provider = "mts_rest"
base_urls = ["http://127.0.0.1:1"]
route_prefixes = ["37529"]
price_per_part = 0.05

[accounts.smsc]
provider = "smsc_http"
base_urls = ["http://127.0.0.1:2"]
price_per_part = 0.03

[accounts.sms2]
provider = "sms2_http"
base_urls = ["http://127.0.0.1:3"]
route_prefixes = ["7"]
"""

ROUTES = ACCOUNTS + """
[[routes]]
match = { prefix = "375", kind = "transactional", lane = "urgent" }
accounts = ["mts", "smsc"]
failover_after_s = 5

[[routes]]
name = "by-cheap"
match = { country = "BY" }
accounts = ["mts", "smsc", "sms2"]
prefer = "cheapest"
"""


def cfg(tmp_path: Path, text: str) -> dict[str, str]:
    p = tmp_path / "g.toml"
    p.write_text(text)
    return {"GONETS_CONFIG": str(p)}


def test_routes_are_matched_in_file_order_then_route_prefixes(tmp_path: Path) -> None:
    s = load_settings(cfg(tmp_path, ROUTES))
    urgent = s.route_for("375291234567", kind="transactional", lane="urgent")
    assert urgent.key == "mts+smsc" and urgent.failover_after_s == 5
    assert urgent.scope == "@mts+smsc"
    # bulk to Belarus: the first route does not match (lane), the country route does
    bulk = s.route_for("375291234567", kind="transactional", lane="bulk")
    assert bulk.key == "by-cheap"
    assert routing.ordered(s, bulk) == ["smsc", "mts", "sms2"]  # priced first, cheapest first
    # Russia: no [[routes]] entry, so the account whose route_prefixes match (a one-account route)
    ru = s.route_for("79161234567")
    assert ru.accounts == ["sms2"] and ru.scope == "sms2"
    assert s.route("79161234567").name == "sms2"


@pytest.mark.parametrize("extra, named", [
    ('[[routes]]\naccounts = ["mts", "nosuch"]\n', "routes.0.accounts"),
    ('[[routes]]\naccounts = ["mts"]\nfailover_after = 3\n', "routes.0.failover_after"),
    ('[[routes]]\naccounts = ["mts"]\nmatch = { prefx = "375" }\n', "routes.0.match.prefx"),
    ('[[routes]]\naccounts = ["mts"]\nprefer = "fastest"\n', "routes.0.prefer"),
    ('[[routes]]\naccounts = []\n', "routes.0.accounts"),
    ('[[routes]]\naccounts = ["mts"]\nmatch = { country = "by" }\n', "routes.0.match.country"),
])
def test_bad_routes_are_errors_naming_the_key(tmp_path: Path, extra: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_settings(cfg(tmp_path, ACCOUNTS + extra))


def test_a_payments_account_cannot_be_in_a_route(tmp_path: Path) -> None:
    text = ACCOUNTS + """
[accounts.pay]
provider = "bepaid"
[[routes]]
accounts = ["mts", "pay"]
"""
    with pytest.raises(ConfigError, match=r"routes\.0\.accounts: 'pay' is not an SMS account"):
        load_settings(cfg(tmp_path, text))


ROUTED = """
[[routes]]
match = {{ prefix = "375" }}
accounts = ["smsc", "mts"]

[accounts.mts]
provider = "mts_rest"
base_urls = ["http://127.0.0.1:1"]
credentials = {{ client_id = "env:TEST_SMSC_LOGIN", client_secret = "env:TEST_SMSC_PASSWORD" }}
"""


@pytest.fixture
def routed(gonets_env: dict[str, str], smsc, monkeypatch) -> Producer:
    from tests.support import write_config

    write_config(Path(gonets_env["GONETS_CONFIG"]), smsc.urls, extra=ROUTED.format())
    for k in ("TEST_SMSC_LOGIN", "TEST_SMSC_PASSWORD"):
        monkeypatch.setenv(k, gonets_env[k])
    return Producer(load_settings(gonets_env))


def test_new_messages_skip_a_paused_account_and_come_back_after_it(routed: Producer) -> None:
    p = routed
    first = p.send_sms("+375291000001", "code 1")
    rec = p.store.get(first)
    assert rec["account"] == "smsc" and rec["route"] == "smsc+mts"
    rt = Runtime(p.settings, p.store)
    rt.pause("smsc", AccountProblem("insufficient funds", code="3", alert="no_funds"))
    moved = p.store.get(p.send_sms("+375291000002", "code 2"))
    assert moved["account"] == "mts"  # the paused account is skipped
    p.store.r.delete(p.store.keys.pause("smsc"))  # its pause ran out: failback
    assert p.store.get(p.send_sms("+375291000003", "code 3"))["account"] == "smsc"
    # naming an account bypasses the route (and its failover)
    named = p.store.get(p.send_sms("+375291000004", "code 4", account="mts"))
    assert named["account"] == "mts" and "route" not in named


def test_duplicates_and_idempotency_count_across_the_route(routed: Producer) -> None:
    p = routed
    a = p.send_sms("+375291000001", "same text", idempotency_key="k1")
    rt = Runtime(p.settings, p.store)
    rt.pause("smsc", AccountProblem("insufficient funds", code="3", alert="no_funds"))
    # the same content within the window, now that the route would pick mts: the first id
    assert p.send_sms("+375291000001", "same text") == a
    assert p.send_sms("+375291000001", "other text", idempotency_key="k1") == a
    assert p.store.get(a)["account"] == "smsc"


def test_a_bad_route_named_by_the_producer_is_invalid_input(routed: Producer) -> None:
    with pytest.raises(InvalidInput, match="account"):
        routed.send_sms("+375291000001", "x", account="nosuch")


def _jobs(store, queue: str) -> list[dict]:
    raw = store.r.hvals(f"gonets-q:{queue}.DQ.msgs") + store.r.hvals(f"gonets-q:{queue}.msgs")
    return [json.loads(m) for m in raw]


@pytest.mark.parametrize("lane", ["bulk", "urgent"])
def test_a_moved_message_joins_the_next_accounts_queue_of_its_own_lane(routed: Producer,
                                                                        lane: str) -> None:
    """Moved bulk waits behind the next account's urgent traffic (its bulk queue); a moved
    urgent message stays urgent there."""
    from core.broker import reset_broker
    from workers.outcomes import Outcomes

    p = routed
    msg = p.send_sms("+375291000011", "code", lane=lane)
    rt = Runtime(p.settings, p.store)
    try:
        rec = p.store.get(msg)
        assert Outcomes(rt).failover(rec, p.settings.account("smsc"), "no_funds",
                                     "insufficient funds")
        other = "urgent" if lane == "bulk" else "bulk"
        assert [j["args"] for j in _jobs(p.store, f"sms.mts.{lane}")] == [[msg]]
        assert _jobs(p.store, f"sms.mts.{other}") == []
        moved = p.store.get(msg)
        assert moved["account"] == "mts" and moved["provider"] == "mts_rest"
        assert "seq" not in moved  # the numeric id belonged to the account it left
        # no sender asked for: SMSC's default name ("Gonets") is not carried to MTS, which
        # sends under its own default (none configured here)
        assert rec["sender"] == "Gonets" and "sender" not in moved
        # a second try from the account it left is refused: the record is no longer there
        assert not Outcomes(rt).failover(rec, p.settings.account("smsc"), "no_funds", "again")
        # counted once, per route, account left and reason, on /metrics
        from core.observability.metrics import StoreCollector

        fam = next(f for f in StoreCollector(p.settings).collect()
                   if f.name == "gonets_route_failovers")
        assert [(s.labels, s.value) for s in fam.samples if s.name.endswith("_total")] == [
            ({"route": "smsc+mts", "account": "smsc", "reason": "no_funds"}, 1.0)]
    finally:
        rt.close()
        reset_broker()


def test_a_message_in_flight_is_never_moved(routed: Producer) -> None:
    from core.broker import reset_broker
    from workers.outcomes import Outcomes

    p = routed
    msg = p.send_sms("+375291000012", "code")
    p.store.begin_attempt(msg)  # it went out; no answer yet
    rt = Runtime(p.settings, p.store)
    try:
        assert not Outcomes(rt).failover(p.store.get(msg), p.settings.account("smsc"),
                                         "unreachable", "no answer")
        assert p.store.get(msg)["account"] == "smsc" and not _jobs(p.store, "sms.mts.bulk")
    finally:
        rt.close()
        reset_broker()


def test_the_flood_rule_counts_one_burst_across_the_route(routed: Producer) -> None:
    from core.settings import Limits
    from workers.traffic import Hold, Traffic

    p = routed
    one = Limits(flood_max_messages=1)
    smsc = p.settings.account("smsc").model_copy(update={"limits": one})
    mts = p.settings.account("mts").model_copy(update={"limits": one})
    t = Traffic(p.store.r, p.store.ns)

    def rec(phone: str, route: str | None = None) -> dict[str, str]:
        return {"id": phone, "phone": phone, "lane": "bulk", "parts": "1",
                **({"route": route} if route else {})}

    t.admit(smsc, rec("375291000013", "smsc+mts"))
    with pytest.raises(Hold):  # the same subscriber, the other account of the route
        t.admit(mts, rec("375291000013", "smsc+mts"))
    t.admit(mts, rec("375291000014"))  # unrouted: the provider's own count


def test_a_rejection_for_an_account_reason_moves_a_bad_number_does_not(routed: Producer) -> None:
    """MTS 10 (sender not registered on this account) is the account's fault: the message
    moves on and the account is paused; a bad number is closed where it was rejected."""
    from core.broker import reset_broker
    from core.errors import Permanent
    from core.store import now_ms
    from workers.outcomes import Outcomes

    p = routed
    smsc = p.settings.account("smsc")
    sender = p.send_sms("+375291000021", "a", sender="Shop")
    bad = p.send_sms("+375291000022", "b")
    rt = Runtime(p.settings, p.store)
    try:
        oc = Outcomes(rt)
        for msg in (sender, bad):
            p.store.begin_attempt(msg)  # as a real send: in flight until the answer
        assert oc.send_failed(p.store.get(bad), smsc, Permanent(
            "invalid number", code="7", rejected=True), sent_ms=now_ms()) is None
        assert p.store.get(bad)["status"] == "rejected"
        assert p.store.get(bad)["account"] == "smsc" and "tried" not in p.store.get(bad)
        assert oc.send_failed(p.store.get(sender), smsc, Permanent(
            "sender not registered", code="10", rejected=True, alert="sender"),
            sent_ms=now_ms()) is None
        rec = p.store.get(sender)
        assert rec["status"] == "queued" and rec["account"] == "mts"
        assert json.loads(rec["tried"])[0]["reason"] == "sender"
        assert rec["sender"] == "Shop"  # the name the caller asked for goes with it
        assert rt.pause_left_s("smsc") > 0
        assert [j["args"] for j in _jobs(p.store, "sms.mts.bulk")] == [[sender]]
    finally:
        rt.close()
        reset_broker()


def test_cheapest_uses_configured_prices_then_what_the_provider_reported(
        gonets_env: dict[str, str], smsc, monkeypatch) -> None:
    """``prefer = "cheapest"``: MTS's configured price against SMSC's reported cost (kept from
    each send's answer); ties and unknown prices keep the order given."""
    from core.broker import reset_broker
    from core.facts import Submitted
    from core.timing import CheckPlan
    from tests.support import write_config
    from workers.outcomes import Outcomes

    write_config(Path(gonets_env["GONETS_CONFIG"]), smsc.urls, extra="""
[[routes]]
match = { prefix = "375" }
accounts = ["mts", "smsc"]
prefer = "cheapest"

[accounts.mts]
provider = "mts_rest"
base_urls = ["http://127.0.0.1:1"]
price_per_part = 1.0
""")
    for k in ("TEST_SMSC_LOGIN", "TEST_SMSC_PASSWORD"):
        monkeypatch.setenv(k, gonets_env[k])
    p = Producer(load_settings(gonets_env))
    first = p.send_sms("+375291000031", "price unknown yet")
    assert p.store.get(first)["account"] == "mts"  # SMSC's price unknown: priced first
    rt = Runtime(p.settings, p.store)
    try:
        rec = p.store.get(first)
        out = outgoing(rec)
        # SMSC answers a send with its cost (cost=3): 1.5 for 3 parts is 0.5 a part
        Outcomes(rt).submitted(rec, p.settings.account("smsc"), out,
                               Submitted(provider_id="1", parts=3, cost="1.50"),
                               CheckPlan(first_s=600, max_s=600))
    finally:
        rt.close()
        reset_broker()
    assert p.store.get(p.send_sms("+375291000032", "now cheaper"))["account"] == "smsc"

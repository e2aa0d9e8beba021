"""The store's status rules, on a real Redis."""

from __future__ import annotations

import pytest

from core.contracts import Status
from core.errors import UnknownMessage
from core.store import Store, redis_client


@pytest.fixture
def s(redis_url):
    st = Store(redis_client(redis_url), retention_s=120)
    yield st
    st.r.close()


def test_a_final_status_never_changes_and_status_never_moves_back(s: Store) -> None:
    s.create("m1", {"account": "a", "phone": "375291234567"}, next_check_ms=1)
    assert s.transition("m1", Status.SUBMITTED, provider_status="0").changed
    assert not s.transition("m1", Status.QUEUED).changed          # no way back
    assert s.transition("m1", Status.DELIVERED, provider_status="1").changed
    late = s.transition("m1", Status.FAILED, provider_status="20")  # a late, conflicting report
    assert not late.changed and late.status == Status.DELIVERED
    assert s.get("m1")["provider_status"] == "1"
    assert [e["status"] for e in s.history("m1")] == ["queued", "submitted", "delivered"]
    assert [e["status"] for _, e in s.events()] == ["queued", "submitted", "delivered"]


def test_final_records_expire_after_retention_and_leave_the_index(s: Store) -> None:
    s.create("m2", {"account": "a"}, next_check_ms=5)
    assert s.r.zscore(s.nonfinal_key, "m2") == 5
    assert s.r.ttl(s.msg_key("m2")) == -1  # non-final records are kept
    s.transition("m2", Status.REJECTED, error_code="7")
    assert 0 < s.r.ttl(s.msg_key("m2")) <= 120
    assert 0 < s.r.ttl(s.msg_key("m2") + ":history") <= 120
    assert s.r.zscore(s.nonfinal_key, "m2") is None


def test_same_status_updates_fields_without_an_event(s: Store) -> None:
    s.create("m3", {"account": "a"}, next_check_ms=1)
    s.transition("m3", Status.SUBMITTED)
    r = s.transition("m3", Status.SUBMITTED, provider_status="-1")
    assert not r.changed and s.get("m3")["provider_status"] == "-1"
    assert len(s.history("m3")) == 2


def test_unknown_ids_are_a_clear_error_and_create_is_not_an_overwrite(s: Store) -> None:
    with pytest.raises(UnknownMessage):
        s.transition("nope", Status.DELIVERED)
    with pytest.raises(UnknownMessage):
        s.update("nope", x=1)
    assert not s.r.exists(s.msg_key("nope"))  # no fragment left behind
    assert s.create("m4", {"account": "a"}, next_check_ms=1)
    assert not s.create("m4", {"account": "b"}, next_check_ms=1)
    assert s.get("m4")["account"] == "a"


def test_a_status_model_must_rank_every_status() -> None:
    from enum import StrEnum

    from core.keys import Keys
    from core.store import RecordModel

    class Half(StrEnum):
        OPEN = "open"
        SHUT = "shut"

    with pytest.raises(ValueError, match="every status needs a rank"):
        RecordModel(name="half", statuses=Half, ranks={Half.OPEN: 0}, record=Keys.msg,
                    history=Keys.msg_history, events=Keys.events, index=Keys.nonfinal)


def test_payments_follow_the_same_rules_on_their_own_keys(s: Store) -> None:
    from core.payment_store import PaymentStore
    from core.payments import PaymentStatus

    ps = PaymentStore(s)
    assert ps.create_payment("p1", {"amount": 100}, account="bp", due_ms=7)
    assert s.r.zscore(ps.due_key("bp"), "p1") == 7
    assert ps.move_payment("p1", PaymentStatus.PENDING, provider_status="pending").changed
    assert ps.move_payment("p1", PaymentStatus.SUCCESSFUL).changed
    late = ps.move_payment("p1", PaymentStatus.PENDING)      # a late notification
    assert not late.changed and late.status is PaymentStatus.SUCCESSFUL
    assert [e["status"] for e in ps.history("p1")] == ["queued", "pending", "successful"]
    assert s.r.zscore(ps.due_key("bp"), "p1") is None and 0 < s.r.ttl(ps.pay_key("p1")) <= 120
    assert s.r.xlen(ps.events_key) == 3
    assert not s.r.exists(s.events_key) and not s.r.exists(s.stats_key)  # messages untouched

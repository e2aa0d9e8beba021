"""core/keys.py names every key Gonets writes: each name it builds has a row in its table, and
a real run (producer, worker, provider sandbox, account pause, balance) leaves no key without
one."""

from __future__ import annotations

import inspect

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from core.account_state import AccountState
from core.keys import TABLE, Keys
from core.locks import Lease, locks_for
from tests.support import wait_final


def test_every_name_the_keys_module_builds_has_a_row_in_its_table():
    keys = Keys("gonets")
    built: list[str] = []
    for name, method in inspect.getmembers(keys, inspect.ismethod):
        if name.startswith("_") or name in ("key", "describe", "alerts", "broker_namespace") \
                or name.startswith(("queue", "delayed")):
            continue
        params = list(inspect.signature(method).parameters)
        samples: dict[str, object] = {p: "x1" for p in params}
        samples.update({p: 1 for p in ("slot", "fire_ms") if p in params})
        for kind in (["mid", "gid", "early", "earlyphone", "orphan", "resend", "idfmt"]
                     if name == "smpp" else [None]):
            key = method(**(samples if kind is None else {**samples, "kind": kind}))
            assert keys.describe(key) is not None, (name, key)
            built.append(key)
    # and every row has a builder
    assert {d.pattern for d in TABLE} == {keys.describe(k).pattern  # type: ignore[union-attr]
                                          for k in built}
    assert keys.describe("gonets:no-such-thing:1") is None
    assert keys.describe("other:msg:1") is None


def test_a_run_leaves_only_keys_the_table_names(settings, store, producer, smsc,
                                                start_worker):
    start_worker(threads=4)
    ids = [producer.send_sms(f"+37529123456{i}", f"keys table {i}") for i in range(3)]
    assert producer.send_sms("+375291234560", "keys table 0") == ids[0]  # a duplicate
    wait_final(store, ids, 60)
    state = AccountState.of(store)
    state.open_incident("smsc", "no_funds", "{}", 5)
    state.close_incident("smsc")
    state.record_balance("smsc", "10")
    state.open_low_balance("smsc", "10")
    lease = Lease(store.r, [store.keys.smpp_lease("login", 1)], 5)
    assert lease.acquire()
    locks_for(store.r).take(store.keys.cb_lock(ids[0]), "me", 5)

    keys = Keys(settings.namespace)
    written = [k for k in store.r.scan_iter("*") if not k.startswith(keys.broker_namespace())]
    assert len(written) > 10
    undocumented = sorted(k for k in written if keys.describe(k) is None)
    assert undocumented == []
    kinds = {keys.describe(k).pattern for k in written}  # type: ignore[union-attr]
    assert {"msg:<id>", "events", "pid:<acct>:<provider id>", "dup:<acct>:<fingerprint>",
            "pace:<acct>", "resumed:<acct>", "alert:<acct>:<kind>",
            "smpp:lease:<login>:<slot>"} <= kinds
    for k in written:  # the table says which type each key has
        assert store.r.type(k) == keys.describe(k).type, k  # type: ignore[union-attr]


def test_an_incident_cannot_be_opened_under_the_low_balance_alert(store):
    with pytest.raises(ValueError):
        AccountState.of(store).open_incident("smsc", "low_balance", "{}", 5)
    assert AccountState.of(store).open_alerts("smsc") == []


@given(ns=st.from_regex(r"[a-z][a-z0-9_-]{0,10}", fullmatch=True), a=st.text(), b=st.text())
@hsettings(max_examples=300, deadline=None)
def test_keys_written_directly_are_keys_own(ns: str, a: str, b: str) -> None:
    """The keys every accepted message writes, spelled without ``Keys.key``, are its text."""
    k = Keys(ns)
    assert k.msg(a) == k.key("msg", a)
    assert k.msg_history(a) == k.key("msg", a, "history")
    assert k.dup(a, b) == k.key("dup", a, b)

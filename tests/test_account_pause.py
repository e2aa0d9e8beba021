"""Account problems: one alert per incident; a failure from before the recovery is stale."""

from __future__ import annotations

import time

from core.errors import AccountProblem
from workers.runtime import Runtime


def test_one_alert_per_incident_and_stale_failures_do_not_reopen_it(settings, store) -> None:
    rt = Runtime(settings, store)
    no_funds = AccountProblem("insufficient funds", code="3", alert="no_funds")
    before = int(time.time() * 1000)
    assert rt.pause("smsc", no_funds, started_ms=before) is True     # alert
    assert rt.pause("smsc", no_funds, started_ms=before) is False    # same incident
    assert rt.pause_left_s("smsc") > 0
    rt.resume("smsc")                                                # a send worked
    assert rt.pause_left_s("smsc") == 0
    # a request sent before the recovery fails late: it belongs to the old incident
    assert rt.pause("smsc", no_funds, started_ms=before) is False
    assert rt.pause_left_s("smsc") == 0
    time.sleep(0.01)
    # a request sent after the recovery fails: a new incident, a new alert
    assert rt.pause("smsc", no_funds, started_ms=int(time.time() * 1000)) is True


def test_recovering_from_an_incident_keeps_the_low_balance_alert(
        gonets_env, smsc, monkeypatch, caplog) -> None:
    """The low-balance alert belongs to the balance check: an account problem that ends
    (no funds, then a send works) must not clear it, or a balance that is still low alerts a
    second time and the alert gauge drops while the balance is still under the threshold."""
    import logging
    from pathlib import Path

    from core.keys import LOW_BALANCE, Keys
    from core.settings import load_settings
    from core.store import Store, redis_client
    from tests.conftest import control, write_config
    from workers import actors, runtime

    write_config(Path(gonets_env["GONETS_CONFIG"]), smsc.urls,
                 extra="limits = { min_balance = 100.0 }")
    for k in ("TEST_SMSC_LOGIN", "TEST_SMSC_PASSWORD"):
        monkeypatch.setenv(k, gonets_env[k])
    settings = load_settings(gonets_env)
    store = Store(redis_client(settings.redis_url), namespace=settings.namespace)
    rt = Runtime(settings, store)
    monkeypatch.setattr(runtime, "_runtime", rt)
    keys = Keys(settings.namespace)
    control(smsc.urls[0], balance=50.0)

    def low_balance_alerts() -> int:
        return sum(1 for rec in caplog.records
                   if getattr(rec, "gonets_alert", None) == LOW_BALANCE)

    try:
        with caplog.at_level(logging.WARNING):
            actors.check_balance("smsc")
            assert low_balance_alerts() == 1
            no_funds = AccountProblem("insufficient funds", code="3", alert="no_funds")
            assert rt.pause("smsc", no_funds) is True
            assert rt.pause_left_s("smsc") > 0
            rt.resume("smsc")  # the no-funds incident is over
            assert not store.r.exists(keys.alert("smsc", "no_funds"))
            assert store.r.exists(keys.alert("smsc", LOW_BALANCE))  # still low: still open
            actors.check_balance("smsc")
            assert low_balance_alerts() == 1  # the same low-balance incident: no new alert
            control(smsc.urls[0], balance=1000.0)
            actors.check_balance("smsc")
            assert not store.r.exists(keys.alert("smsc", LOW_BALANCE))
    finally:
        rt.close()
        store.r.close()

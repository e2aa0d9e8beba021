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

"""``gonets sentry apply`` against a stand-in of Sentry's dashboards and alert-rules API
(tests/sentry_api_standin.py: the documented endpoints, auth, pagination, validation)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli.sentry import DEFAULT_DIR, differences, load_definitions
from tests.sentry_api_standin import SentryApiStandIn
from tests.support import ROOT

TOKEN = "sntrys_test_token_123"
ORG, PROJECT = "acme", "gonets"


@pytest.fixture
def sentry_api() -> Iterator[SentryApiStandIn]:
    s = SentryApiStandIn(TOKEN, ORG, PROJECT, page_size=2)  # small pages: the cursor is used
    yield s
    s.stop()


def _apply(env: dict[str, str], api: SentryApiStandIn, *extra: str,
           token: str | None = TOKEN) -> subprocess.CompletedProcess[str]:
    e = dict(env)
    e.pop("SENTRY_AUTH_TOKEN", None)
    if token is not None:
        e["SENTRY_AUTH_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "cli.main", "sentry", "apply", "--org", ORG,
                           "--project", PROJECT, "--url", api.url, *extra],
                          env=e, cwd=ROOT, capture_output=True, text=True, timeout=60)


def _writes(api: SentryApiStandIn, since: int) -> list[tuple[str, str]]:
    return [r for r in api.requests[since:] if r[0] != "GET"]


def _by_key(api: SentryApiStandIn, kind: str) -> dict[str, dict[str, Any]]:
    key = "title" if kind == "dashboard" else "name"
    return {o[key]: o for o in api.objects[kind].values()}


def test_apply_creates_everything_then_changes_nothing_and_puts_hand_edits_back(
        gonets_env, sentry_api):
    # a dry run against an empty organization: the plan, and not one write
    dry = _apply(gonets_env, sentry_api, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would create" in dry.stdout and "6 to change, 0 unchanged" in dry.stdout
    assert _writes(sentry_api, 0) == [] and not any(sentry_api.objects.values())

    first = _apply(gonets_env, sentry_api)
    assert first.returncode == 0, first.stderr
    assert "6 changed, 0 unchanged" in first.stdout
    dashboards = _by_key(sentry_api, "dashboard")
    assert set(dashboards) == {"Gonets: sending", "Gonets: queues",
                               "Gonets: payments and sweeps"}
    metric = _by_key(sentry_api, "metric_alert")
    # per-account rules: one per SMS account of the configuration (here: smsc)
    assert set(metric) == {"Gonets: send failure rate on smsc",
                           "Gonets: queue wait p95 on smsc"}
    assert metric["Gonets: send failure rate on smsc"]["query"].endswith("account:smsc")
    assert metric["Gonets: send failure rate on smsc"]["projects"] == [PROJECT]
    assert set(_by_key(sentry_api, "issue_alert")) == {"Gonets: account incident"}
    ids = {k: {o["id"] for o in v.values()} for k, v in sentry_api.objects.items()}

    # run twice: nothing to change, no write at all, no duplicate
    mark = len(sentry_api.requests)
    second = _apply(gonets_env, sentry_api)
    assert second.returncode == 0, second.stderr
    assert "0 changed, 6 unchanged" in second.stdout
    assert _writes(sentry_api, mark) == []
    assert {k: {o["id"] for o in v.values()} for k, v in sentry_api.objects.items()} == ids

    # someone edits in Sentry's UI: a widget's filter, a widget added, a threshold, a frequency
    sending = dashboards["Gonets: sending"]
    sending["widgets"][0]["queries"][0]["conditions"] = "transaction:send_sms"
    queues = _by_key(sentry_api, "dashboard")["Gonets: queues"]
    queues["widgets"].append(json.loads(json.dumps(queues["widgets"][0])))
    rule = metric["Gonets: queue wait p95 on smsc"]
    rule["triggers"][0]["alertThreshold"] = 999999.0
    issue = _by_key(sentry_api, "issue_alert")["Gonets: account incident"]
    issue["frequency"] = 1440

    plan = _apply(gonets_env, sentry_api, "--dry-run")
    assert plan.returncode == 0, plan.stderr
    assert "4 to change, 2 unchanged" in plan.stdout
    assert "widgets[0].queries[0].conditions" in plan.stdout
    assert "triggers[0].alertThreshold" in plan.stdout and "frequency" in plan.stdout
    assert sending["widgets"][0]["queries"][0]["conditions"] == "transaction:send_sms"

    mark = len(sentry_api.requests)
    fix = _apply(gonets_env, sentry_api)
    assert fix.returncode == 0, fix.stderr
    assert "4 changed, 2 unchanged" in fix.stdout
    assert sorted(m for m, _ in _writes(sentry_api, mark)) == ["PUT"] * 4
    # put back in place: same objects (ids), our definitions again
    assert {k: {o["id"] for o in v.values()} for k, v in sentry_api.objects.items()} == ids
    defs = load_definitions(DEFAULT_DIR, project=PROJECT, accounts=["smsc"])
    for d in defs:
        kind_objects = _by_key(sentry_api, d.kind)
        assert differences(d.body, kind_objects[d.key]) == [], d.key
    assert len(_by_key(sentry_api, "dashboard")["Gonets: queues"]["widgets"]) == \
        len(next(d for d in defs if d.key == "Gonets: queues").body["widgets"])
    assert "0 changed, 6 unchanged" in _apply(gonets_env, sentry_api).stdout


def test_apply_needs_a_token_and_says_when_sentry_refuses_it(gonets_env, sentry_api):
    none = _apply(gonets_env, sentry_api, token=None)
    assert none.returncode == 2 and "SENTRY_AUTH_TOKEN" in none.stderr
    wrong = _apply(gonets_env, sentry_api, token="not-the-token")
    assert wrong.returncode == 1 and "HTTP 401" in wrong.stderr
    assert "not-the-token" not in wrong.stderr + wrong.stdout
    assert not any(sentry_api.objects.values())


def test_every_shipped_definition_is_valid_for_sentrys_api(sentry_api):
    """Each definition file is accepted by the stand-in's validation of the documented
    fields, and the dashboards chart what the workers tag and measure."""
    defs = load_definitions(DEFAULT_DIR, project=PROJECT, accounts=["a1", "a2"])
    assert len([d for d in defs if d.kind == "metric_alert"]) == 4  # two rules per account
    for d in defs:
        _, err = sentry_api._valid(d.kind, json.dumps(d.body).encode())
        assert err is None, (d.source, err)
        assert "{account}" not in json.dumps(d.body), d.source  # all filled in
        assert "{project}" not in json.dumps(d.body), d.source
    text = " ".join(json.dumps(d.body) for d in defs)
    for figure in ("measurements.queue_wait", "measurements.pacing_wait", "spans.http",
                   "outcome:throttled", "error_code", "failure_rate()"):
        assert figure in text
    # the README says what each dashboard answers
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for d in defs:
        if d.kind == "dashboard":
            assert d.key in readme, d.key


def test_differences_ignore_what_sentry_adds_and_see_what_was_changed() -> None:
    want = {"name": "x", "triggers": [{"label": "critical", "alertThreshold": 5}],
            "timeWindow": 10}
    have = {"id": "7", "name": "x", "timeWindow": 10.0, "dateCreated": "…",
            "triggers": [{"id": "9", "label": "critical", "alertThreshold": 5.0}]}
    assert differences(want, have) == []
    have["triggers"][0]["alertThreshold"] = 6.0
    assert differences(want, have) == ["triggers[0].alertThreshold"]
    assert differences(want, {**have, "triggers": []}) == ["triggers"]
    assert differences({"a": 1}, {"a": "1"}) == []  # Sentry echoes some numbers as text
    assert differences({"a": 1}, {"a": "x"}) == ["a"]
    assert Path(DEFAULT_DIR).is_dir()

"""Opt-in consent: recorded, withdrawn, shown; promotional SMS refused without it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from core.errors import InvalidInput
from producers.consent import get_consent, has_consent, record_consent, withdraw_consent
from tests.support import ROOT


def test_grant_withdraw_and_history(producer, store):
    assert has_consent(producer, "+375 29 123-45-67") is False
    assert get_consent(producer, "+375291234567") is None
    c = record_consent(producer, "+375 29 123-45-67", source="web form")
    assert c.phone == "375291234567" and c.granted
    assert has_consent(store, "375291234567")  # a Store works too, any spelling of the number
    msg = producer.send_sms("+375291234567", "Sale!", kind="promotional")
    assert store.get(msg)["kind"] == "promotional"
    withdraw_consent(producer, "+375291234567", source="STOP reply")
    assert not has_consent(producer, "+375291234567")
    with pytest.raises(InvalidInput) as err:
        producer.send_sms("+375291234567", "Sale again!", kind="promotional")
    assert err.value.field == "to"
    got = get_consent(producer, "+375291234567")
    assert got is not None and not got.granted and got.source == "STOP reply"
    assert [h["action"] for h in got.history] == ["grant", "withdraw"]
    assert [h["source"] for h in got.history] == ["web form", "STOP reply"]


def test_bad_input_names_the_field(producer):
    with pytest.raises(InvalidInput) as err:
        record_consent(producer, "12", source="x")
    assert err.value.field == "phone"
    with pytest.raises(InvalidInput) as err:
        record_consent(producer, "+375291234567", source="  ")
    assert err.value.field == "source"


def test_gonets_consent_commands(gonets_env, store):
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cli.main", "consent", *args],
                              env=gonets_env, cwd=ROOT, capture_output=True, text=True,
                              timeout=60)

    out = cli("grant", "--to", "+375297654321", "--source", "shop checkout box")
    assert out.returncode == 0, out.stderr
    assert "consent granted" in out.stdout and "7654321" not in out.stdout  # masked
    assert has_consent(store, "+375297654321")
    got = get_consent(store, "+375297654321")
    assert got is not None and got.source == "shop checkout box"

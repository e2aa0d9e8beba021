"""SMSC's status error codes: one table, and every path a status comes by acts on it the same
way — an SMPP receipt, an HTTP status poll and SMSC's status webhook (shared/providers/
smsc-smpp.md "Error codes in the status"; the HTTP API's ``status`` answer carries the same
``err``). Real Redis, a real worker process and the SMSC HTTP sandbox over sockets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.contracts import Status, status_queue
from core.facts import Resend
from core.provider_options import SmppAccountOptions
from core.smsc_status import smsc_report
from core.store import Store
from tests.support import CALLBACK_SECRET, control, poll_until, wait_final, write_config
from workers.smpp.correlation import receipt_fact
from workers.smpp.receipt import Receipt

# err -> (resend, account alert) the err asks for, whichever path it came by
ACTIONS = [
    (220, Resend.RETRY, None),
    (251, Resend.FLOOD, None),
    (224, None, "no_funds"),
    (239, None, "ip"),
    (254, None, "sender"),
    (13, None, None),
]


@pytest.mark.parametrize("err, resend, alert", ACTIONS)
def test_an_err_asks_the_same_of_a_poll_a_callback_and_a_receipt(
        err: int, resend: Resend | None, alert: str | None) -> None:
    http = smsc_report(20, str(err))  # status.php (poll) and the webhook read this
    smpp = receipt_fact("m1", Receipt(message_id="5", stat="UNDELIV", err=err),
                        SmppAccountOptions(), "smsc_smpp").report
    for rep in (http, smpp):
        assert rep is not None and rep.status == Status.FAILED
        assert rep.resend is resend
        assert (rep.account_problem.alert if rep.account_problem else None) == alert
        assert rep.error_code == str(err) and rep.reason


@pytest.mark.parametrize("code, stat", [(20, "UNDELIV"), (24, "DELETED")])
def test_status_not_received_is_an_unknown_outcome_not_a_failure(code: int, stat: str) -> None:
    # smsc-smpp.md, err 245: "it is impossible to say for sure whether the message was
    # delivered or not"
    http = smsc_report(code, "245")
    smpp = receipt_fact("m1", Receipt(message_id="5", stat=stat, err=245),
                        SmppAccountOptions(), "smsc_smpp").report
    for rep in (http, smpp):
        assert rep is not None and rep.status == Status.UNKNOWN
        assert rep.error_code == "245" and rep.reason == "status not received"
    # a delivered or expired message with it keeps its status
    delivered = smsc_report(1, "245")
    assert delivered is not None and delivered.status == Status.DELIVERED


def _limits(gonets_env: dict[str, str], smsc: Any) -> None:
    """The flood gap short and no duplicate window, so a resend comes within seconds."""
    write_config(Path(gonets_env["GONETS_CONFIG"]), smsc.urls,
                 extra="[accounts.smsc.limits]\nflood_gap_s = 0.5\nduplicate_window_s = 0\n")


def test_a_polled_flood_error_sends_again_like_a_receipt(
        gonets_env, producer, store: Store, smsc, start_worker) -> None:
    _limits(gonets_env, smsc)
    control(smsc.urls[0], final_status={"375291230251": [20, 251]})
    start_worker(threads=2)
    msg_id = producer.send_sms("+375291230251", "too many to one number")
    # sent, polled (20, err 251), sent again three times (the default allowance), then final
    assert wait_final(store, [msg_id], timeout_s=60)[msg_id] == "failed"
    rec = store.get(msg_id)
    assert rec["resubmits"] == "3" and rec["error_code"] == "251"
    sends = [r for r in smsc.log.items() if r["path"] == "/sys/send.php"
             and r["params"].get("phones") == "375291230251"]
    assert len(sends) == 4
    assert "deferred" in store.events_for([msg_id])[msg_id]


def test_a_polled_no_funds_error_pauses_the_account_and_alerts(
        producer, store: Store, smsc, start_worker) -> None:
    control(smsc.urls[0], final_status={"375291230224": [20, 224]})
    start_worker(threads=2)
    msg_id = producer.send_sms("+375291230224", "no money at the operator's end")
    assert wait_final(store, [msg_id])[msg_id] == "failed"
    poll_until(lambda: store.r.exists(store.key("alert", "smsc", "no_funds")), 20,
               "the no-funds alert")


def _jobs(store: Store, queue: str) -> list[dict[str, Any]]:
    raw = store.r.hvals(f"gonets-q:{queue}.DQ.msgs") + store.r.hvals(f"gonets-q:{queue}.msgs")
    return [json.loads(m) for m in raw]


def test_a_callback_asking_for_a_resend_is_handed_to_a_worker_poll(
        api, client, store: Store) -> None:
    msg = client.post("/v1/sms", json={"to": "+375294000220", "text": "hook"}).json()["id"]
    store.transition(msg, Status.SUBMITTED, provider_id="77", seq="77")
    store.bind_provider_id("smsc", "77", msg)
    hook = f"{api.url}/v1/webhooks/smsc/smsc/{CALLBACK_SECRET}"
    r = httpx.post(hook, data={"id": "77", "status": "20", "err": "220"})
    assert r.status_code == 200
    # not closed as failed: a worker's poll reads the status and sends it again
    assert store.get(msg)["status"] == "submitted"
    assert [j["args"] for j in _jobs(store, status_queue("smsc"))] == [[msg]]
    # an err that asks nothing more is recorded at once, as before
    r = httpx.post(hook, data={"id": "77", "status": "20", "err": "245"})
    assert r.status_code == 200 and store.get(msg)["status"] == "unknown"

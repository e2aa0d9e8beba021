"""Issue 14's truth run: a mixed batch across every SMS account of ``config/sandbox.toml`` with
faults on, judged against each sandbox's own record of what it accepted and how it ended.

Real parts: Redis, the five sandboxes (SMSC HTTP with two listeners, MTS REST, SMS2 HTTP and
the SMPP sandbox playing SMSC and MTS) on real sockets in this process, one worker process per
account and the scheduler (status sweeps every few seconds) as ``gonets`` processes, the
shipped ``config/sandbox.toml`` unchanged.  Messages go round-robin over the accounts, each
with a text of its own (so every copy a sandbox accepted is traced to its message); one in 40
of each account's goes to a number the sandbox ends badly (SMSC status 20, MTS ``EXPIRED``,
SMS2 ``not_delivered``, SMPP ``UNDELIV`` err 1); one in 10 is an urgent transactional message
(a login code: ``on_lost_answer = "auto"`` sends it again where an answer was lost), the rest
bulk.

Faults, while the workers drain the batch (times from the first send; ``BENCH_TRUTH_SCALE``
stretches them):

* lost answers: SMSC's first listener takes each request and drops the connection without an
  answer; MTS answers after the client's timeout (the request was processed); SMS2 takes 20
  sends and drops each connection unanswered (an urgent one's resend is then refused as
  "message duplication": the first copy went, its status cannot be followed);
* 5xx: MTS 503 and SMS2 502 for a run of requests;
* throttling: SMSC (error 9), MTS (code 5, limit exceeded) and SMPP (0x58) at
  ``BENCH_TRUTH_THROTTLE_PER_S`` (4) for 8 s, under the account's 30/s and under what a
  loaded host drains;
* receipts before answers: the SMPP sandbox answers ``submit_sm`` 0.3 s late and sends the
  receipt after 0.05 s; then it drops the SMPP link after a few submits;
* a killed worker: the SMSC and SMSC-SMPP workers are SIGKILLed mid-run and started again.

Figures (target 0, 0, 0):

* ``truth_not_final``: records not final once the batch and its sweep horizon are over;
* ``truth_disagree``: contradictions only: a record that says ``delivered``, ``failed``,
  ``rejected`` or ``expired`` while the sandbox's own log says otherwise (a different final
  state of the last copy it took, the one a resend's record follows, or ``delivered`` where
  no sandbox took a copy);
* ``truth_unknown`` (reported beside them, not a contradiction): records that end ``unknown``
  because Gonets cannot know and says so (an answer lost where the provider has no lookup by
  our reference and the account's ``on_lost_answer`` gives up, or SMS2 answering a resend
  "message duplication"), with their reasons counted by account and ``error_code``, and what
  the sandbox did with them (so an honest ``unknown`` is never taken for a wrong one);
* ``truth_doubles``: extra copies a sandbox accepted, on the accounts whose provider can be
  asked whether it took a message (SMSC HTTP: by our id; SMPP: refused duplicate and receipt);
  the accounts that cannot (MTS REST, SMS2) are reported beside it
  (``truth_doubles_no_lookup``), as their lost-answer policy allows.

Size: ``BENCH_TRUTH_N`` (default 10,000) messages; ``BENCH_TRUTH_HORIZON_S`` (default 600)
after the last send for everything to become final; the sweep runs every 5 s and reconciles a
queued message unchanged for ``BENCH_TRUTH_RECONCILE_AFTER_S`` (120; the setting
``reconcile_after_s``, 600 by default).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

from bench.common import CONTROL, ROOT, Worker, base_env, redis_server, result, stop_process
from cli.run import SANDBOX_CONFIG, sandbox_env
from core.broker import build_broker
from core.contracts import Status
from core.settings import load_settings
from core.store import Store
from producers import Producer
from sandbox import mts_rest, smpp_smsc, sms2_http, smsc_http

N = int(os.environ.get("BENCH_TRUTH_N", "10000"))
HORIZON_S = float(os.environ.get("BENCH_TRUTH_HORIZON_S", "600"))
SCALE = float(os.environ.get("BENCH_TRUTH_SCALE", "1"))
THREADS = int(os.environ.get("BENCH_TRUTH_THREADS", "8"))
THROTTLE_PER_S = int(os.environ.get("BENCH_TRUTH_THROTTLE_PER_S", "4"))
#: a queued message unchanged this long is reconciled by the sweep (600 s by default; shorter
#: here so the horizon covers it: the sweep re-enqueues only a message with no job left)
RECONCILE_AFTER_S = float(os.environ.get("BENCH_TRUTH_RECONCILE_AFTER_S", "120"))
ACCOUNTS = ("smsc", "mts", "sms2", "smsc_smpp", "mts_smpp")
#: accounts whose provider can say whether it took a message (no double is acceptable there)
LOOKUP_ACCOUNTS = frozenset({"smsc", "smsc_smpp", "mts_smpp"})
BAD_EVERY = 40
#: one message in this many is urgent transactional (the rest bulk)
URGENT_EVERY = 10
#: what each sandbox's own final state means in Gonets' statuses
SMSC_FINAL = {1: "delivered", 2: "delivered", 4: "delivered", 3: "expired", 20: "failed",
              22: "rejected", 23: "rejected", 24: "failed", 25: "failed"}
MTS_FINAL = {"DELIVERED": "delivered", "EXPIRED": "expired", "REJECTED": "rejected"}
SMS2_FINAL = {"delivered": "delivered", "not_delivered": "failed"}
SMPP_FINAL = {"DELIVRD": "delivered", "UNDELIV": "failed", "EXPIRED": "expired",
              "REJECTD": "rejected", "DELETED": "failed"}


def _phone(account: str, i: int) -> str:
    return f"+7916{i:07d}" if account == "sms2" else f"+375291{i:06d}"


class Sandboxes:
    """Every SMS sandbox in this process, so their own records can be read at the end."""

    def __init__(self) -> None:
        self.smsc, self._smsc_srv = smsc_http.serve("127.0.0.1", [0, 0], balance=1e9)
        self.mts, self._mts_srv = mts_rest.serve("127.0.0.1", 0)
        self.sms2, self._sms2_srv = sms2_http.serve("127.0.0.1", 0, balance=1e9)
        self.smpp, self._smpp_http = smpp_smsc.serve("127.0.0.1", tls=True)
        self.info: dict[str, Any] = {
            "smsc_http": self._smsc_srv.urls(), "mts_rest": self._mts_srv.urls(),
            "sms2_http": self._sms2_srv.urls(),
            "smpp_smsc": {**self.smpp.info(), "control": self._smpp_http.urls()[0]},
            "bepaid": "http://127.0.0.1:9"}
        self.control("mts", balance=1e9)

    def control(self, name: str, **body: Any) -> None:
        url = {"smsc": self.info["smsc_http"][1], "mts": self.info["mts_rest"][0],
               "sms2": self.info["sms2_http"][0], "smpp": self.info["smpp_smsc"]["control"]}
        r = CONTROL.post(f"{url[name]}/_sandbox/control", json=body, timeout=10)
        r.raise_for_status()

    def copies(self) -> dict[str, list[str]]:
        """Text -> the sandbox's own final status of each copy it accepted."""
        out: dict[str, list[str]] = defaultdict(list)
        with self.smsc.lock:
            for m in self.smsc.messages.values():
                out[m.text].append(SMSC_FINAL.get(m.final[0], f"smsc {m.final[0]}"))
        with self.mts.lock:
            for m in self.mts.messages.values():
                out[m.text].append(MTS_FINAL.get(m.final, f"mts {m.final}"))
        with self.sms2.lock:
            for m in self.sms2.messages.values():
                out[m.text].append(SMS2_FINAL.get(m.final, f"sms2 {m.final}"))
        with self.smpp.lock:
            for m in self.smpp.messages.values():
                if not m.part_of:
                    out[m.text].append(SMPP_FINAL.get(m.status, f"smpp {m.status}"))
        return out

    def stop(self) -> None:
        for srv in (self._smsc_srv, self._mts_srv, self._sms2_srv, self._smpp_http):
            srv.stop()
        self.smpp.stop()


class Faults(threading.Thread):
    """The fault schedule, in seconds from the first send (times ``SCALE``)."""

    def __init__(self, sb: Sandboxes, restart: Callable[[str], None]) -> None:
        super().__init__(name="faults", daemon=True)
        self.sb, self.restart = sb, restart
        self.done: list[str] = []
        self.errors: list[str] = []

    def plan(self) -> list[tuple[float, str, Callable[[], None]]]:
        c = self.sb.control
        return [
            (2, "SMSC lost answers", lambda: c("smsc", down=[0], down_mode="accept_then_drop")),
            (3, "MTS 5xx", lambda: c("mts", fail_5xx=[503, 25])),
            (3, "SMS2 5xx", lambda: c("sms2", fail_5xx=[502, 25])),
            (1, "SMS2 lost answers", lambda: c("sms2", lose_answers=20)),
            (4, "SMPP receipts before answers",
             lambda: c("smpp", resp_delay_s=0.3, receipt_delay_s=0.05)),
            (10, "SMSC answers again", lambda: c("smsc", down=[])),
            # under what a loaded host drains per account (~5/s), so that it bites: Gonets
            # learns the lower limit and climbs back slowly (workers/traffic/pacing.py), which
            # lengthens the tail
            (12, "throttling", lambda: (c("smsc", throttle_per_s=THROTTLE_PER_S),
                                        c("mts", max_per_s=THROTTLE_PER_S),
                                        c("smpp", rate_per_s=THROTTLE_PER_S))),
            (15, "SMSC worker killed", lambda: self.restart("smsc")),
            (18, "MTS lost answers", lambda: c("mts", delay_s=6)),
            (20, "throttling ends", lambda: (c("smsc", throttle_per_s=None),
                                             c("mts", max_per_s=0), c("smpp", rate_per_s=30))),
            (22, "MTS answers in time", lambda: c("mts", delay_s=0)),
            (24, "SMPP answers in time", lambda: c("smpp", resp_delay_s=0.0,
                                                   receipt_delay_s=0.1)),
            (26, "SMPP link dropped", lambda: c("smpp", drop_after_submits=5)),
            (30, "SMSC-SMPP worker killed", lambda: self.restart("smsc_smpp")),
        ]

    def run(self) -> None:
        t0 = time.monotonic()
        for at, what, act in self.plan():
            time.sleep(max(0.0, t0 + at * SCALE - time.monotonic()))
            try:
                act()
                self.done.append(what)
            except Exception as exc:  # a fault that could not be set is reported, not fatal
                self.errors.append(f"{what}: {exc!r}")


class Scheduler:
    def __init__(self, env: dict[str, str]) -> None:
        self.log = tempfile.NamedTemporaryFile(prefix="gonets-bench-scheduler-", delete=False)
        self.proc = subprocess.Popen([sys.executable, "-m", "cli.main", "scheduler"], env=env,
                                     cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        stop_process(self.proc, self.log)


def _records(store: Store, ids: list[str]) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for start in range(0, len(ids), 1000):
        pipe = store.r.pipeline(transaction=False)
        for i in ids[start:start + 1000]:
            pipe.hgetall(store.msg_key(i))
        out += pipe.execute()
    return out


def truth_run(n: int = N) -> tuple[dict[str, Any], list[str]]:
    tag = f"{time.time():.0f}"
    with redis_server() as srv:
        sb = Sandboxes()
        env = base_env(srv.url, SANDBOX_CONFIG, **sandbox_env(sb.info),
                       GONETS_SANDBOX_WEBHOOKS_URL="http://127.0.0.1:9",
                       GONETS_STATUS_SWEEP_EVERY_S="5", GONETS_LOG_LEVEL="WARNING",
                       GONETS_RECONCILE_AFTER_S=str(RECONCILE_AFTER_S))
        settings = load_settings(env)
        store = Store.from_settings(settings)
        broker = build_broker(settings)
        producer = Producer(settings, store=store, broker=broker)
        workers: dict[str, Worker] = {}
        sched: Scheduler | None = None
        notes: list[str] = []
        try:
            smpp_bad: dict[str, int] = {}
            for i in range(n):  # the numbers each sandbox ends badly
                if (i // len(ACCOUNTS)) % BAD_EVERY:
                    continue
                acct = ACCOUNTS[i % len(ACCOUNTS)]
                digits = _phone(acct, i).lstrip("+")
                if acct == "smsc":
                    sb.control("smsc", final_status={digits: [20, 0]})
                elif acct == "mts":
                    sb.control("mts", final_status={digits: "EXPIRED"})
                elif acct == "sms2":
                    sb.control("sms2", final_status={digits: "not_delivered"})
                else:  # err 1, "the subscriber does not exist"
                    smpp_bad[digits] = 1
            sb.control("smpp", phone_error=smpp_bad)
            for acct in ACCOUNTS:
                workers[acct] = Worker(env, acct, THREADS)
            sched = Scheduler(env)

            def restart(acct: str) -> None:
                workers[acct].stop(signal.SIGKILL)
                time.sleep(2)
                workers[acct] = Worker(env, acct, THREADS)

            faults = Faults(sb, restart)
            items = [{"to": _phone(ACCOUNTS[i % len(ACCOUNTS)], i),
                      "text": f"Truth run {tag} message {i}",
                      "account": ACCOUNTS[i % len(ACCOUNTS)],
                      "lane": "bulk" if (i // len(ACCOUNTS)) % URGENT_EVERY else "urgent"}
                     for i in range(n)]
            t0, t0_wall = time.monotonic(), time.time()
            faults.start()
            ids: list[str] = []
            for start in range(0, n, 500):
                for got in producer.send_many(items[start:start + 500]):
                    if isinstance(got, Exception):
                        raise RuntimeError(f"the producer refused a message: {got}")
                    ids.append(got.id)
            sent_s = time.monotonic() - t0
            faults.join()
            deadline = time.monotonic() + HORIZON_S
            while True:
                recs = _records(store, ids)
                open_ = sum(1 for r in recs if not Status(r.get("status", "queued")).final)
                if open_ == 0 or time.monotonic() > deadline:
                    break
                time.sleep(2)
            drained_s = time.monotonic() - t0
            copies = sb.copies()
            seen: Counter[str] = Counter()
            for item, msg_id, rec in zip(items, ids, recs, strict=True):
                if Status(rec.get("status", "queued")).final or seen[item["account"]] >= 3:
                    continue  # a few open records per account, with their last events
                seen[item["account"]] += 1
                events = [f"{e.get('status')}({e.get('reason') or ''})"
                          for e in store.history(msg_id)[-3:]]
                more = {k: rec[k] for k in ("inflight_ms", "reconciled", "provider_id",
                                            "waiting_reason") if rec.get(k)}
                notes.append(f"open {item['account']} {msg_id}: {rec.get('status')}, "
                             f"attempts {rec.get('attempts', 0)}, {more}, last "
                             f"{' '.join(events)}")
            shown: Counter[str] = Counter()
            for item, msg_id, rec in zip(items, ids, recs, strict=True):
                if rec.get("status") != "unknown" or shown[item["account"]] >= 3:
                    continue  # when a few unknown ones went out and were given up
                shown[item["account"]] += 1
                at = {k: f"{(int(rec[k]) / 1000 - t0_wall):.1f}s" for k in
                      ("inflight_ms", "updated_ms", "submitted_ms") if rec.get(k)}
                notes.append(f"unknown {item['account']} {msg_id}: attempts "
                             f"{rec.get('attempts', 0)}, {at} after the first send; "
                             f"{rec.get('reason', '')[:160]}")
            for item, msg_id, rec in sorted(zip(items, ids, recs, strict=True),
                                            key=lambda x: -int(x[2].get("updated_ms") or 0))[:3]:
                events = [f"{e.get('status')}({(e.get('reason') or '')[:60]})"
                          for e in store.history(msg_id)[-4:]]
                ended_s = int(rec.get("updated_ms") or 0) / 1000 - t0_wall
                notes.append(f"last to end: {item['account']} {item['lane']} {msg_id} "
                             f"{rec.get('status')} at {ended_s:.1f} s, attempts "
                             f"{rec.get('attempts', 0)}, "
                             f"lost_answer {rec.get('lost_answer') or '-'}: {' '.join(events)}")
            notes.append("sandbox counters: " + "; ".join(
                f"{name} {dict(obj.counters)}" for name, obj in
                (("smsc", sb.smsc), ("mts", sb.mts), ("sms2", sb.sms2), ("smpp", sb.smpp))))
        finally:
            for w in workers.values():
                w.stop()
            if sched is not None:
                sched.stop()
            broker.close()
            sb.stop()
    notes += [f"faults: {', '.join(faults.done)}"] + \
        ([f"faults not set: {'; '.join(faults.errors)}"] if faults.errors else [])
    not_final, disagree, doubles, doubles_nl, unknown = 0, 0, 0, 0, 0
    by_status: Counter[str] = Counter()
    why: Counter[str] = Counter()
    unknown_why: Counter[str] = Counter()
    for item, rec in zip(items, recs, strict=True):
        st = rec.get("status", "missing")
        by_status[st] += 1
        got = copies.get(item["text"], [])
        extra = max(0, len(got) - 1)
        if item["account"] in LOOKUP_ACCOUNTS:
            doubles += extra
        else:
            doubles_nl += extra
        if extra:
            why[f"{item['account']} {item['lane']} {extra} extra copies "
                f"(lost_answer {rec.get('lost_answer') or '-'})"] += 1
        if st == "missing" or not Status(st).final:
            not_final += 1
            why[f"{item['account']} {st}"] += 1
            continue
        # the copy Gonets follows: the last one a sandbox took (a resend's, where one was made)
        truth = got[-1] if got else None
        if st == "unknown":  # we say we cannot know: counted apart, never a contradiction
            unknown += 1
            unknown_why[f"{item['account']} {item['lane']} {rec.get('error_code') or '-'}"
                        f"/{rec.get('lost_answer') or '-'} (sandbox: {truth or 'no copy'})"] += 1
        elif (truth is None and st == "delivered") or (truth is not None and st != truth):
            disagree += 1
            why[f"{item['account']} {st} vs sandbox {truth}"] += 1
    figures = {"n": n, "not_final": not_final, "disagree": disagree, "doubles": doubles,
               "doubles_no_lookup": doubles_nl, "unknown": unknown, "sent_s": sent_s,
               "drained_s": drained_s, "statuses": dict(by_status),
               "why": dict(why.most_common(8)), "unknown_why": dict(unknown_why.most_common(8))}
    return figures, notes


def run() -> list[dict[str, Any]]:
    f, notes = truth_run()
    for line in notes:
        print(f"  {line}")
    print(f"  {f['n']} messages queued in {f['sent_s']:.1f} s, all final after "
          f"{f['drained_s']:.1f} s; statuses {f['statuses']}")
    if f["why"]:
        print(f"  off the truth: {f['why']}")
    print("  reading: truth_disagree counts contradictions only (we say delivered, failed, "
          "rejected or expired and the sandbox's log says otherwise); an honest unknown (we "
          "cannot know, and say so) is truth_unknown, apart")
    if f["unknown_why"]:
        print(f"  unknown, by account, lane, error_code/lost_answer: {f['unknown_why']}")
    size = f"{f['n']} messages over {len(ACCOUNTS)} accounts, faults on"
    return [
        result("truth_not_final", f["not_final"], "records", target="0",
               note=f"{size}; not final {HORIZON_S:.0f} s after the last send"),
        result("truth_disagree", f["disagree"], "records", target="0",
               note=f"{size}; contradictions: final status delivered/failed/rejected/expired "
                    "that the sandbox's own log contradicts"),
        result("truth_unknown", f["unknown"], "records",
               note=f"{size}; honest unknown (cannot be known, said so), not a contradiction: "
                    + ", ".join(f"{k} x{v}" for k, v in f["unknown_why"].items())),
        result("truth_doubles", f["doubles"], "copies", target="0",
               note=f"{size}; extra copies on accounts with a lookup "
                    f"({', '.join(sorted(LOOKUP_ACCOUNTS))})"),
        result("truth_doubles_no_lookup", f["doubles_no_lookup"], "copies",
               note=f"{size}; extra copies on MTS REST and SMS2 (no lookup by our "
                    "reference; their lost-answer policy decides)"),
        result("truth_drain_s", f["drained_s"], "s", note=f"{size}; first send to all final"),
    ]


if __name__ == "__main__":
    for r in run():
        print(r)

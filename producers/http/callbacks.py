"""Webhooks out: every status change of a message with a ``callback_url`` is POSTed there,
signed, retried with backoff for 24 h, in order per message (``gonets callbacks``).

Driven by the event stream (core/store.py) through a consumer group, so nothing is lost
across restarts:

    ns:events              stream  every status change of messages; group ``callbacks``
    ns:payments:events     stream  every status change of payments (and checks, which have
                                   no callbacks); the same group
    ns:cb:q:<id>           zset    the message's undelivered callbacks: score = event time
                                   (ms), member = "<seq, 10 digits>|<JSON>"; oldest first
    ns:cb:due              zset    message id -> when its oldest callback is next tried (ms)
    ns:cb:try:<id>         hash    attempts, first_ms of the oldest callback
    ns:cb:lock:<id>        string  one deliverer per message at a time (expires)

*Ingest* reads new events (``XREADGROUP``), and for those whose record has a
``callback_url`` adds the callback to the message's queue and marks it due, acknowledging
the events in the same MULTI: an event is either queued and acknowledged or neither.  Events
a dead dispatcher had read but not acknowledged are claimed back (``XAUTOCLAIM``) after 30 s.

*Delivery* takes due messages, holds the message's lock, and POSTs its callbacks oldest
first; the next one goes only after the previous one got a 2xx.  A failure (network, non-2xx)
puts the message back with exponential backoff (1 s, 2 s … capped at 1 h); a callback still
failing 24 h after its first try is dropped and logged, and the next one goes.

Payments (``ns:pay:<id>`` with a ``callback_url``) are sent the same way, ``"type":
"payment.status"``.  Each POST: ``Content-Type: application/json``, ``X-Gonets-Event-Id``, and
``X-Gonets-Signature: sha256=<hex HMAC-SHA256 of the raw body>`` keyed with the producer's
callback secret (printed by ``gonets token create``).  The body::

    {"type": "sms.status", "id": "...", "status": "delivered", "at": "2026-…Z",
     "event_id": "1732…-0", "provider_status": "1", "error_code": null, "reason": null}

(``"account"`` is added to the ``submitted`` callback of a message: the account that took it.)

Messages a Bitrix24 portal sent (record field ``integration`` = ``bitrix24:<its message id>``)
go through the same queue, order and retries, but each is reported to the portal's
``messageservice.message.status.update`` instead of a POST (producers/http/bitrix24.py maps
the statuses and renews the portal's OAuth token).

Each POST goes only where ``producers/callback_targets.py`` allows: the URL's name is resolved,
every address is checked (loopback, private, link-local, CGNAT and metadata addresses are
refused unless the record says the operator allowed them, ``callback_private``) and the
connection goes to the checked address with the URL's ``Host`` and TLS name.  A refused
callback is dropped at once and logged; a name that does not resolve is retried.

One ``gonets callbacks`` process per cluster is the intended shape; a second one is safe (the
lock keeps each message to one deliverer; ordering is by event time in any case).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import random
import socket
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import redis

from core.locks import new_token
from core.replies import stream_entries, text, text_list
from core.settings import Settings
from core.store import Store, now_ms
from producers.callback_targets import Refused, Resolver, pin
from producers.http.auth import Tokens

log = logging.getLogger("gonets.callbacks")

GROUP = "callbacks"
#: one deliverer per message at a time; a deliverer that dies frees it after this long
LOCK_TTL_S = 120.0

#: remove the message from the due set only if its queue is empty (atomic with ingest)
_UNDUE = """
if redis.call('zcard', KEYS[1]) == 0 then
    redis.call('zrem', KEYS[2], ARGV[1])
    return 1
end
return 0
"""


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    """What a receiver does: constant-time compare of the header with its own HMAC."""
    return hmac.compare_digest(sign(secret, body), header)


@dataclass(frozen=True)
class Backoff:
    first_s: float = 1.0
    max_s: float = 3600.0
    give_up_s: float = 24 * 3600.0

    def delay_s(self, attempts: int) -> float:
        d = min(self.max_s, self.first_s * 2.0 ** max(0, attempts - 1))
        return d * random.uniform(0.9, 1.1)


def _iso(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds") \
        .replace("+00:00", "Z")


class Dispatcher:
    def __init__(self, settings: Settings, *, store: Store | None = None,
                 backoff: Backoff = Backoff(), threads: int = 16, timeout_s: float = 10.0,
                 claim_idle_ms: int = 30_000, consumer: str | None = None,
                 resolve: Resolver = socket.getaddrinfo,
                 verify: ssl.SSLContext | bool = True) -> None:
        self.store = store or Store.from_settings(settings)
        self.keys = self.store.keys
        # the dispatcher's own keys (cb:*, core/keys.py) and its consumer groups
        self.r = self.store.r  # the dispatcher's own keys
        self.tokens = Tokens(self.r, settings.namespace)
        self.backoff = backoff
        self.resolve = resolve  # how callback hosts are resolved (checked, then connected to)
        self.threads = threads
        self.claim_idle_ms = claim_idle_ms
        self.consumer = consumer or f"{socket.gethostname()}-{id(self):x}"
        #: event stream -> (callback ``type``, record key prefix)
        self.streams = {self.store.events_key: ("sms.status", "msg"),
                        self.keys.payment_events(): ("payment.status", "pay")}
        # ``verify``: the CAs HTTPS receivers are checked against (certifi's by default)
        self.client = httpx.Client(timeout=timeout_s, follow_redirects=False, verify=verify,
                                   headers={"User-Agent": "gonets-callbacks/1"},
                                   limits=httpx.Limits(max_connections=threads * 2))
        self._undue = self.r.register_script(_UNDUE)
        from producers.http.bitrix24_portal import Reporter

        self.bitrix24 = Reporter(self.store)
        self._stop = threading.Event()
        self._busy: set[str] = set()
        self._busy_lock = threading.Lock()
        self._wake = threading.Event()
        self.delivered = 0
        self.dropped = 0
        self.refused = 0

    # --- ingest
    def ensure_group(self) -> None:
        for stream in self.streams:
            try:
                # from the start of the stream: a first start takes what is still in it
                self.r.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def ingest_once(self, block_ms: int = 1000) -> int:
        """Read one batch of events; returns how many were read."""
        entries: list[tuple[str, str, dict[str, str]]] = []
        for stream in self.streams:
            # entries other consumers read and never acknowledged (they died)
            claimed = self.r.xautoclaim(stream, GROUP, self.consumer,
                                        min_idle_time=self.claim_idle_ms, start_id="0-0",
                                        count=500)
            entries += [(stream, eid, f)
                        for eid, f in stream_entries(claimed[1] if claimed else None)]
        if not entries:
            got = self.r.xreadgroup(GROUP, self.consumer, {s: ">" for s in self.streams},
                                    count=500, block=block_ms)
            # RESP2 answers [[stream, entries], ...]; RESP3 a {stream: entries} map
            per_stream = got.items() if isinstance(got, dict) else (got or [])
            for name, items in per_stream:
                entries += [(text(name), eid, f) for eid, f in stream_entries(items)]
        acks: dict[str, list[str]] = {}
        for stream, eid, _ in entries:
            acks.setdefault(stream, []).append(eid)
        entries = [e for e in entries if e[2]]  # trimmed entries come back empty
        if not acks:
            return 0
        pipe = self.r.pipeline(transaction=False)
        for stream, _, f in entries:
            pipe.hmget(self.store.key(self.streams[stream][1], f.get("id", "")),
                       "callback_url", "producer", "integration", "callback_private")
        targets = pipe.execute()
        tx = self.r.pipeline(transaction=True)
        due: dict[str, int] = {}
        for (stream, eid, f), (url, producer, integration, private) in zip(entries, targets,
                                                                            strict=True):
            b24 = integration[len("bitrix24:"):] \
                if integration and integration.startswith("bitrix24:") else None
            if not url and b24 is None:
                continue
            ms_s, _, seq = eid.partition("-")
            try:
                ev = json.loads(f.get("event") or "{}")
                at = int(ev.get("at_ms") or ms_s)
            except (ValueError, TypeError, AttributeError):
                ev, at = {}, int(ms_s)
            body = {"type": self.streams[stream][0], "id": f["id"], "status": f.get("status"),
                    "at": _iso(at), "event_id": eid,
                    "provider_status": ev.get("provider_status"),
                    "error_code": ev.get("error_code"), "reason": ev.get("reason")}
            if ev.get("account"):  # the account that took it (a route may have moved it)
                body["account"] = ev["account"]
            target: dict[str, Any] = {"url": url or "", "producer": producer or "",
                                      "body": body}
            if b24 is not None:
                target["bitrix24"] = b24
            if private == "1":
                target["private"] = True
            entry = json.dumps(target, separators=(",", ":"))
            tx.zadd(self.keys.cb_queue(f["id"]), {f"{int(seq):010d}|{entry}": int(ms_s)})
            due[f["id"]] = now_ms()
        for msg_id, at in due.items():
            tx.zadd(self.keys.cb_due(), {msg_id: at}, nx=True)
        for stream, ids in acks.items():
            tx.xack(stream, GROUP, *ids)
        tx.execute()
        if due:
            self._wake.set()
        return sum(len(ids) for ids in acks.values())

    # --- delivery
    def due_ids(self, limit: int = 200) -> list[str]:
        return text_list(self.r.zrangebyscore(self.keys.cb_due(), "-inf", now_ms(), start=0,
                                              num=limit))

    def deliver(self, msg_id: str, max_per_turn: int = 50) -> None:
        """Deliver the message's callbacks in order until one fails or none are left."""
        lock = self.keys.cb_lock(msg_id)
        token = new_token()
        if not self.store.locks.take(lock, token, LOCK_TTL_S):
            return
        try:
            for _ in range(max_per_turn):
                head = text_list(self.r.zrange(self.keys.cb_queue(msg_id), 0, 0))
                if not head:
                    self._undue(keys=[self.keys.cb_queue(msg_id), self.keys.cb_due()],
                                args=[msg_id])
                    return
                if not self._post(msg_id, head[0]):
                    return
            self.r.zadd(self.keys.cb_due(), {msg_id: now_ms()})
        finally:
            self.store.locks.release(lock, token)  # only if still ours

    def _post(self, msg_id: str, member: str) -> bool:
        """POST one callback. True when it is done with (delivered or given up)."""
        entry = json.loads(member.split("|", 1)[1])
        if "bitrix24" in entry:
            ok, why = self.bitrix24.deliver(entry["producer"], entry["bitrix24"], msg_id,
                                            str(entry["body"]["status"]))
            return self._settle(msg_id, member, entry, ok, why)
        body = json.dumps(entry["body"], ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json",
                   "X-Gonets-Event-Id": entry["body"]["event_id"]}
        secret = self.tokens.callback_secret(entry["producer"]) if entry["producer"] else None
        if secret:
            headers["X-Gonets-Signature"] = sign(secret, body)
        ok = False
        try:
            to = pin(entry["url"], allow_private=bool(entry.get("private")),
                     resolve=self.resolve)
        except Refused as exc:
            # never retried: the target is not one this producer may reach
            log.warning("callback %s for %s refused: %s", entry["body"]["event_id"], msg_id,
                        exc.reason)
            self.refused += 1
            return self._drop(msg_id, member)
        except (OSError, ValueError, UnicodeError) as exc:  # no address yet: try again later
            return self._settle(msg_id, member, entry, False, f"resolving: {exc}")
        headers["Host"] = to.host_header
        try:
            resp = self.client.post(to.url, content=body, headers=headers,
                                    extensions={"sni_hostname": to.sni_hostname}
                                    if to.sni_hostname else None)
            ok = 200 <= resp.status_code < 300
            why = f"HTTP {resp.status_code}"
        except httpx.HTTPError as exc:
            why = type(exc).__name__
        except Exception as exc:  # a URL httpx cannot even use: keep retrying is pointless
            why = type(exc).__name__
            log.warning("callback %s for %s: unusable URL (%s)", entry["body"]["event_id"],
                        msg_id, why)
        return self._settle(msg_id, member, entry, ok, why)

    def _drop(self, msg_id: str, member: str) -> bool:
        pipe = self.r.pipeline(transaction=True)
        pipe.zrem(self.keys.cb_queue(msg_id), member)
        pipe.delete(self.keys.cb_try(msg_id))
        pipe.execute()
        return True

    def _settle(self, msg_id: str, member: str, entry: dict[str, Any], ok: bool,
                why: str) -> bool:
        """Done with the callback (delivered or given up), or schedule the next try."""
        tries = self.keys.cb_try(msg_id)
        if ok:
            pipe = self.r.pipeline(transaction=True)
            pipe.zrem(self.keys.cb_queue(msg_id), member)
            pipe.delete(tries)
            pipe.execute()
            self.delivered += 1
            return True
        now = now_ms()
        pipe = self.r.pipeline(transaction=True)
        pipe.hincrby(tries, "attempts", 1)
        pipe.hsetnx(tries, "first_ms", now)
        pipe.hget(tries, "first_ms")
        attempts, _, first = pipe.execute()
        if now - int(first) > self.backoff.give_up_s * 1000:
            log.warning("callback %s for %s dropped after %d attempts over %.0f h (last: %s)",
                        entry["body"]["event_id"], msg_id, attempts,
                        self.backoff.give_up_s / 3600, why)
            pipe = self.r.pipeline(transaction=True)
            pipe.zrem(self.keys.cb_queue(msg_id), member)
            pipe.delete(tries)
            pipe.execute()
            self.dropped += 1
            return True
        delay = self.backoff.delay_s(int(attempts))
        log.info("callback %s for %s failed (%s); attempt %d, next in %.1f s",
                 entry["body"]["event_id"], msg_id, why, attempts, delay)
        self.r.zadd(self.keys.cb_due(), {msg_id: now + int(delay * 1000)})
        return False

    # --- running
    def run(self) -> None:
        """Ingest and deliver until ``stop()``."""
        # Redis may be away at start (a pod starting during an outage, or Redis gone between
        # the health server's start and here): wait for it, never exit on it
        while not self._stop.is_set():
            try:
                self.ensure_group()
                break
            except redis.RedisError:
                log.warning("Redis unavailable; retrying", exc_info=True)
                self._stop.wait(1)
        ingest = threading.Thread(target=self._ingest_loop, name="callbacks-ingest",
                                  daemon=True)
        ingest.start()
        with ThreadPoolExecutor(self.threads, thread_name_prefix="callbacks") as pool:
            while not self._stop.is_set():
                try:
                    ids = self.due_ids()
                except redis.RedisError:
                    log.warning("Redis unavailable; retrying", exc_info=True)
                    self._stop.wait(1)
                    continue
                for msg_id in ids:
                    with self._busy_lock:
                        if msg_id in self._busy or len(self._busy) >= self.threads * 4:
                            continue
                        self._busy.add(msg_id)
                    pool.submit(self._deliver_guarded, msg_id)
                self._wake.wait(0.05 if ids else 0.25)
                self._wake.clear()
        ingest.join(5)
        self.client.close()
        self.bitrix24.client.close()

    def _deliver_guarded(self, msg_id: str) -> None:
        try:
            self.deliver(msg_id)
        except Exception:
            log.exception("delivering callbacks of %s failed; will retry", msg_id)
        finally:
            with self._busy_lock:
                self._busy.discard(msg_id)

    def _ingest_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.ingest_once(block_ms=500)
            except redis.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    log.exception("callback ingest failed; retrying")
                    self._stop.wait(1)
                    continue
                # Redis came back without our group (restarted without its data): make it
                # again, or no callback would ever be read
                log.warning("callbacks: consumer group gone; creating it again")
                with contextlib.suppress(redis.RedisError):
                    self.ensure_group()
            except redis.RedisError:
                log.warning("Redis unavailable; retrying", exc_info=True)
                self._stop.wait(1)
            except Exception:
                log.exception("callback ingest failed; retrying")
                self._stop.wait(1)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def start_thread(self) -> threading.Thread:
        t = threading.Thread(target=self.run, name="callbacks", daemon=True)
        t.start()
        return t


def install_stop_signals(d: Dispatcher) -> None:
    """SIGTERM/SIGINT stop ``d``. The handler runs in the main thread between two bytecodes,
    possibly while that thread holds the lock of the very event it would set (waiting on it,
    retrying after a Redis error): setting it there deadlocks the process for ever, so the
    events are set from another thread (core.signals.set_from_handler)."""
    import signal

    from core.signals import set_from_handler

    def on_signal(signum: int, frame: object) -> None:
        set_from_handler(d._stop, d._wake)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def run_dispatcher(settings: Settings, threads: int = 16) -> int:
    """``gonets callbacks``: run until SIGTERM/SIGINT."""
    d = Dispatcher(settings, threads=threads)
    install_stop_signals(d)
    log.info("callbacks dispatcher ready (consumer %s)", d.consumer)
    d.run()
    return 0


"""One SMPP session per worker process: a thread that owns the link (``workers.smpp.link``).

Every byte of a bind goes through one thread (``gonets-smpp-<account>``), so it is also where
the last pacing check is made:

    actor threads ──request(slot)──▶ queue by slot ──▶ session thread ──submit_sm──▶ server
         ▲                                               │ holds each submit until its slot;
         │                                               │ > late_s past it: SlotMissed, unsent
         └──── Future.result(timeout) ◀──────────────────┘◀─submit_sm_resp / generic_nack
                                                          ◀─deliver_sm / data_sm ─▶ dispatcher
                                                            thread (store) ─▶ *_resp after
                                                            the receipt is applied

* Pacing: a request may carry ``not_before`` (its slot, a ``time.time()`` instant) and
  ``late_s``.  It is written no earlier than its slot; if the thread reaches it more than
  ``late_s`` after the slot (a stalled host), it fails with ``SlotMissed`` and nothing is
  written: the caller books a new slot.  Requests of different slots are never written
  together; the parts of one message (one slot) are.
* Binds as transceiver (or transmitter / receiver) with ``system_type`` flags; a bind lease
  (``workers.smpp.lease``) is held first when one is configured: without it the session
  stands by and binds nothing.
* enquire_link after ``enquire_link_s`` without traffic; a request unanswered for
  ``response_timeout_s`` (an enquire_link too) means the link is dead.
* A dead link fails every unanswered request with ``LinkLost`` (the caller decides: its submit
  may or may not have been taken); requests not yet written stay queued for the next bind.
  Reconnects back off exponentially with jitter, trying the hosts in turn (primary, backup).
* deliver_sm is answered with deliver_sm_resp, data_sm with data_sm_resp, once the handler
  has applied it.  ``close()`` (SIGTERM): no new requests, the window drains, the receipts
  already read are applied and answered, then unbind (a receipt arriving meanwhile is applied
  and answered too), and the lease is released.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import select
import socket
import ssl
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from smpplib import consts

from core.stall import stall

from workers.smpp.link import (
    ALERT_NOTIFICATION,
    ENQUIRE_LINK,
    ENQUIRE_LINK_RESP,
    GENERIC_NACK,
    RECEIVED,
    SUBMIT_SM_RESP,
    UNBIND,
    UNBIND_RESP,
    BindRefused,
    Link,
    LinkError,
    answer,
    header,
)

__all__ = ["BindRefused", "LinkLost", "NotBound", "Resp", "Session", "SessionConfig",
           "SessionError", "SlotMissed"]

log = logging.getLogger("gonets.smpp")

#: how long close() lets the receipts already read be applied and answered before unbinding
CLOSE_ACK_S = 5.0
LINK_ERRORS = (OSError, LinkError, socket.timeout)


class SessionError(Exception):
    """Base of what a request can fail with."""


class NotBound(SessionError):
    """Nothing was written: no bind (standing by without a lease, closing, or no link in
    time). Safe to send again elsewhere."""


class LinkLost(SessionError):
    """The request was written but the link died before its answer: the server may or may
    not have acted on it."""

    def __init__(self, detail: str, sent_at: float) -> None:
        super().__init__(detail)
        self.sent_at = sent_at


class SlotMissed(SessionError):
    """Nothing was written: the session thread came more than ``late_s`` after the request's
    pacing slot. The caller gives the slot up and books another."""

    def __init__(self, late_s: float) -> None:
        super().__init__(f"{late_s * 1000:.1f} ms past its pacing slot; not written")
        self.late_s = late_s


@dataclass(frozen=True)
class Resp:
    """The answer to a request: the response PDU's status and body fields."""

    command: str
    status: int
    fields: dict[str, Any]
    sent_at: float
    #: which server answered ("host:port")
    server: str = ""


class Lease(Protocol):
    def acquire(self) -> bool: ...

    def renew(self) -> bool: ...

    def release(self) -> None: ...

    @property
    def renew_every_s(self) -> float: ...


@dataclass(frozen=True)
class SessionConfig:
    account: str
    hosts: tuple[tuple[str, int], ...]
    system_id: Callable[[], str]
    password: Callable[[], str]
    system_type: str = ""
    bind_mode: str = "transceiver"
    tls: ssl.SSLContext | None = None
    max_pending: int = 300
    enquire_link_s: float = 60.0
    response_timeout_s: float = 30.0
    connect_timeout_s: float = 10.0
    backoff_min_s: float = 0.5
    backoff_max_s: float = 30.0
    addr_ton: int = 0
    addr_npi: int = 0
    #: a session not bound this long (while it should be) counts as dead for health checks
    dead_after_s: float = 120.0


# The receive side: called on the dispatcher thread with the body and command_id of a
# deliver_sm or data_sm; returns the command_status of its answer (0 = taken; anything else
# asks the server to offer it again).
DeliverHandler = Callable[[bytes, int], int]


@dataclass
class _Pending:
    command: str
    params: dict[str, Any]
    future: Future[Resp]
    sent_at: float = 0.0
    #: the pacing slot (``time.time()``; 0: unpaced) and how late past it it may be written
    not_before: float = 0.0
    late_s: float | None = None


@dataclass
class Stats:
    binds: int = 0
    link_losses: int = 0
    submits: int = 0
    responses: int = 0
    delivers: int = 0
    malformed: int = 0
    last_server: str = ""
    kicked: int = 0
    #: requests failed with SlotMissed (their slot had gone by)
    forfeits: int = 0
    #: receipts answered while the session closed
    acked_closing: int = 0
    extra: dict[str, int] = field(default_factory=dict)


@dataclass
class _Upkeep:
    """The serving loop's bookkeeping for one link."""

    last_tx: float
    last_rx: float
    next_renew: float
    link_check_seq: int | None = None
    link_check_at: float = 0.0


class Session:
    def __init__(self, cfg: SessionConfig, on_deliver: DeliverHandler,
                 lease: Lease | None = None) -> None:
        self.cfg = cfg
        self.on_deliver = on_deliver
        self.lease = lease
        self.stats = Stats()
        self._lock = threading.Lock()
        #: requests not written yet: (not_before, order, pending), a heap
        self._queue: list[tuple[float, int, _Pending]] = []
        self._order = itertools.count()
        self._control: deque[Callable[[], None]] = deque()
        self._window: dict[int, _Pending] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stop = threading.Event()
        self._closing = False
        self._bound = threading.Event()
        self._standby = True
        #: set once the session has asked for its lease (standing_by means something then)
        self.lease_checked = threading.Event()
        self._link: Link | None = None
        self._generation = 0
        self._host_index = 0
        self._since_unbound = time.monotonic()
        self._bind_error: BindRefused | None = None
        #: received deliver_sm / data_sm: (generation, sequence, command_id, body)
        self._inbox: deque[tuple[int, int, int, bytes]] = deque()
        self._inbox_cv = threading.Condition()
        #: received and not yet answered (queued to the dispatcher or being applied)
        self._rx_open = 0
        self._thread = threading.Thread(target=self._run, name=f"gonets-smpp-{cfg.account}",
                                        daemon=True)
        self._dispatcher = threading.Thread(target=self._dispatch,
                                            name=f"gonets-smpp-{cfg.account}-rx", daemon=True)

    # --- the actor-thread side ------------------------------------------------------------
    def start(self) -> "Session":
        self._thread.start()
        self._dispatcher.start()
        return self

    @property
    def bound(self) -> bool:
        return self._bound.is_set()

    @property
    def standing_by(self) -> bool:
        """True while this process holds no bind lease (another process sends)."""
        return self._standby

    @property
    def bind_error(self) -> BindRefused | None:
        return self._bind_error

    def is_alive(self) -> bool:
        """Cheap health check: the session thread runs, and it is bound, standing by, or has
        been unbound for less than ``dead_after_s``."""
        if not self._thread.is_alive() or not self._dispatcher.is_alive():
            return False
        if self._bound.is_set() or self._standby or self._closing:
            return True
        return time.monotonic() - self._since_unbound < self.cfg.dead_after_s

    def wait_bound(self, timeout_s: float) -> bool:
        return self._bound.wait(timeout_s)

    def request(self, command: str, params: dict[str, Any], *, not_before: float = 0.0,
                late_s: float | None = None) -> Future[Resp]:
        """Queue a request (``submit_sm``, ``query_sm``); the future gets its ``Resp`` or a
        SessionError. With ``not_before`` (a pacing slot) and ``late_s`` it is written at its
        slot or not at all (``SlotMissed``). Cancel the future to withdraw a request not yet
        written."""
        if self._closing or self._stop.is_set():
            raise NotBound("the SMPP session is closing")
        if self._standby and self.lease is not None:
            raise NotBound("this process holds no bind lease for the account")
        fut: Future[Resp] = Future()
        p = _Pending(command, params, fut, not_before=not_before, late_s=late_s)
        with self._lock:
            heapq.heappush(self._queue, (not_before, next(self._order), p))
        self._wake()
        return fut

    def close(self, drain_timeout_s: float = 30.0) -> None:
        """Stop taking requests, let the window drain, answer the receipts read, unbind,
        release the lease."""
        self._closing = True
        deadline = time.monotonic() + drain_timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                busy = bool(self._queue) or bool(self._window)
            if not busy or not self._bound.is_set():
                break
            time.sleep(0.02)
        self._stop.set()
        self._wake()
        self._thread.join(timeout=10 + CLOSE_ACK_S)
        with self._inbox_cv:
            self._inbox_cv.notify_all()
        self._dispatcher.join(timeout=5)
        with self._lock:
            queued = [p for _, _, p in self._queue]
            self._queue.clear()
        for p in queued:
            if p.future.set_running_or_notify_cancel():
                p.future.set_exception(NotBound("the SMPP session closed"))
        self._wake_r.close()
        self._wake_w.close()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass

    # --- the session thread: links ---------------------------------------------------------
    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                held = self._hold_lease()
                self._standby = not held
                self.lease_checked.set()
                if not held:
                    self._stop.wait(min(1.0, self.lease.renew_every_s if self.lease else 1.0))
                    continue
                host, port = self.cfg.hosts[self._host_index % len(self.cfg.hosts)]
                try:
                    link = self._connect(host, port)
                except (*LINK_ERRORS, BindRefused, ssl.SSLError) as exc:
                    if isinstance(exc, BindRefused):
                        self._bind_error = exc
                    log.warning("smpp %s: cannot bind to %s:%s: %s", self.cfg.account, host,
                                port, exc)
                    self._host_index += 1
                    failures += 1
                    if failures % len(self.cfg.hosts) == 0:  # every host failed: back off
                        rounds = failures // len(self.cfg.hosts)
                        delay = min(self.cfg.backoff_max_s,
                                    self.cfg.backoff_min_s * 2 ** (rounds - 1))
                        self._stop.wait(delay * random.uniform(0.5, 1.0))
                    continue
                failures = 0
                self._bind_error = None
                self._serve(link)
            except Exception:  # never let the thread die: log, back off, go again
                log.exception("smpp %s: session loop error", self.cfg.account)
                self._link_down("session error")
                self._stop.wait(self.cfg.backoff_min_s)
        if self.lease is not None:
            try:
                self.lease.release()
            except Exception:
                log.warning("smpp %s: could not release the bind lease", self.cfg.account)

    def _hold_lease(self) -> bool:
        if self.lease is None:
            return True
        try:
            return self.lease.acquire()
        except Exception as exc:
            log.warning("smpp %s: lease store unreachable: %s", self.cfg.account, exc)
            return False

    def _connect(self, host: str, port: int) -> Link:
        link = Link.open(host, port, timeout_s=self.cfg.connect_timeout_s, tls=self.cfg.tls)
        try:
            resp = link.bind(self.cfg.bind_mode, timeout_s=self.cfg.connect_timeout_s,
                             system_id=self.cfg.system_id(), password=self.cfg.password(),
                             system_type=self.cfg.system_type, addr_ton=self.cfg.addr_ton,
                             addr_npi=self.cfg.addr_npi)
        except BaseException:
            link.close()
            raise
        peer = getattr(resp, "system_id", b"") or b""
        log.info("smpp %s: bound to %s:%s as %s (SMSC system_id %s)", self.cfg.account, host,
                 port, self.cfg.bind_mode,
                 peer.decode("ascii", "replace") if isinstance(peer, bytes) else peer)
        return link

    def _serve(self, link: Link) -> None:
        self._link = link
        self._generation += 1
        self.stats.binds += 1
        self.stats.last_server = link.server
        self._bound.set()
        link.sock.settimeout(self.cfg.response_timeout_s)
        now = time.monotonic()
        up = _Upkeep(last_tx=now, last_rx=now,
                     next_renew=now + (self.lease.renew_every_s if self.lease else 1e12))
        reason = "closed"
        try:
            while True:
                if self._stop.is_set():
                    reason = "closing"
                    self._finish(link)
                    return
                problem = (self._renew_lease(up) or self._flush_control(link, up)
                           or self._write_due(link, up) or self._check_link(link, up)
                           or self._read(link, up))
                if problem:
                    reason = problem
                    return
        except LINK_ERRORS as exc:
            reason = f"link error: {exc!r}"
        finally:
            self._bound.clear()
            self._since_unbound = time.monotonic()
            link.close()
            self._link = None
            self._link_down(reason)

    # --- the serving loop's steps (each returns why the link ends, or "") -------------------
    def _renew_lease(self, up: _Upkeep) -> str:
        if self.lease is None or time.monotonic() < up.next_renew:
            return ""
        try:
            held = self.lease.renew()
        except Exception as exc:
            log.warning("smpp %s: lease renew failed: %s", self.cfg.account, exc)
            held = False
        if not held:
            assert self._link is not None
            self._unbind(self._link)
            return "bind lease lost"
        up.next_renew = time.monotonic() + self.lease.renew_every_s
        return ""

    def _flush_control(self, link: Link, up: _Upkeep) -> str:
        """Answers to received PDUs, queued by the dispatcher."""
        while True:
            with self._lock:
                item = self._control.popleft() if self._control else None
            if item is None:
                return ""
            item()
            up.last_tx = time.monotonic()

    def _due(self) -> list[_Pending]:
        """Requests whose slot has come, in slot order, as many as the window has room for."""
        out: list[_Pending] = []
        room = self.cfg.max_pending - len(self._window)
        now = time.time()
        with self._lock:
            while self._queue and len(out) < room and self._queue[0][0] <= now:
                out.append(heapq.heappop(self._queue)[2])
        return [p for p in out if p.future.set_running_or_notify_cancel()]

    def _write_due(self, link: Link, up: _Upkeep) -> str:
        """Write what is due: unpaced requests together, each pacing slot on its own, checked
        for lateness right before its write."""
        batch = bytearray()
        for at, group in itertools.groupby(self._due(), key=lambda p: p.not_before):
            encoded = self._encode(link, list(group))
            if not encoded:
                continue
            late_s = encoded[0][1].late_s
            if late_s is None:
                batch += b"".join(data for _, _, data in encoded)
                self._in_window(encoded, up)
                continue
            stall()  # a test hook: nothing unless GONETS_TEST_STALL is set
            late = time.time() - at
            if late > late_s:  # the slot has gone by: write nothing, the caller books again
                self.stats.forfeits += len(encoded)
                for _, p, _ in encoded:
                    p.future.set_exception(SlotMissed(late))
                continue
            self._in_window(encoded, up)
            link.write(b"".join(data for _, _, data in encoded))
        if batch:
            link.write(bytes(batch))
        return ""

    def _encode(self, link: Link, group: list[_Pending]) -> list[tuple[int, _Pending, bytes]]:
        out = []
        for p in group:
            try:
                seq, data = link.make(p.command, **p.params)
            except Exception as exc:  # bad parameters: this request only
                p.future.set_exception(ValueError(f"cannot encode {p.command}: {exc!r}"))
                continue
            out.append((seq, p, data))
        return out

    def _in_window(self, encoded: list[tuple[int, _Pending, bytes]], up: _Upkeep) -> None:
        now = time.monotonic()
        for seq, p, _ in encoded:
            p.sent_at = now
            self._window[seq] = p
            if p.command == "submit_sm":
                self.stats.submits += 1
        up.last_tx = now

    def _check_link(self, link: Link, up: _Upkeep) -> str:
        now = time.monotonic()
        if up.link_check_seq is not None and now - up.link_check_at > self.cfg.response_timeout_s:
            return "enquire_link unanswered"
        # the window is in sending order: its first entry is the oldest
        oldest = next(iter(self._window.values())).sent_at if self._window else None
        if oldest is not None and now - oldest > self.cfg.response_timeout_s:
            return "a request went unanswered"
        if up.link_check_seq is None and now - max(up.last_tx, up.last_rx) >= self.cfg.enquire_link_s:
            seq, data = link.make("enquire_link")
            link.write(data)
            up.link_check_seq, up.link_check_at, up.last_tx = seq, now, now
        return ""

    def _timeout(self, up: _Upkeep) -> float:
        now = time.monotonic()
        timeout = min(self.cfg.enquire_link_s - (now - max(up.last_tx, up.last_rx)),
                      up.next_renew - now, 1.0)
        with self._lock:
            head = self._queue[0][0] if self._queue else None
        if head is not None and len(self._window) < self.cfg.max_pending:
            timeout = min(timeout, head - time.time())  # wake at the next pacing slot
        return max(0.0, timeout)

    def _read(self, link: Link, up: _Upkeep) -> str:
        """Wait for input (or a wake-up, or the next slot), then act on every whole PDU."""
        ready = link.pending()
        if not ready:
            r, _, _ = select.select([link.sock, self._wake_r], [], [], self._timeout(up))
            if self._wake_r in r:
                try:
                    while self._wake_r.recv(4096):
                        pass
                except (BlockingIOError, OSError):
                    pass
            ready = link.sock in r
        if ready:
            link.fill()
            up.last_rx = time.monotonic()
        while (frame := link.next_frame()) is not None:
            outcome = self._on_frame(link, frame)
            if outcome == "unbind":
                self.stats.kicked += 1
                return "the server unbound us"
            if outcome == "link_ok":
                up.link_check_seq = None
        return ""

    # --- frames --------------------------------------------------------------------------
    def _on_frame(self, link: Link, frame: bytes, inline: bool = False) -> str:
        _, command_id, status, seq = header(frame)
        if command_id in RECEIVED:
            self.stats.delivers += 1
            if inline:  # closing: apply and answer it here, the dispatcher is done
                self.stats.acked_closing += 1
                link.write(answer(RECEIVED[command_id], seq, self._handle(frame[16:],
                                                                          command_id)))
                return ""
            with self._inbox_cv:
                self._rx_open += 1
                self._inbox.append((self._generation, seq, command_id, frame[16:]))
                self._inbox_cv.notify()
            return ""
        if command_id == ENQUIRE_LINK:
            link.write(answer(ENQUIRE_LINK_RESP, seq, body=b""))
            return ""
        if command_id == ENQUIRE_LINK_RESP:
            self._window.pop(seq, None)
            return "link_ok"
        if command_id == UNBIND:
            try:
                link.write(answer(UNBIND_RESP, seq, body=b""))
            except OSError:
                pass
            return "unbind"
        if command_id == ALERT_NOTIFICATION or command_id == UNBIND_RESP:
            return ""
        if command_id & 0x80000000 == 0:
            # a request we do not serve: say so, never die of it
            link.write(answer(GENERIC_NACK, seq, consts.SMPP_ESME_RINVCMDID, body=b""))
            return ""
        self._on_answer(link, frame, command_id, status, seq)
        return ""

    def _on_answer(self, link: Link, frame: bytes, command_id: int, status: int,
                   seq: int) -> None:
        p = self._window.pop(seq, None)
        if p is None:
            log.warning("smpp %s: answer 0x%08x to unknown sequence %s", self.cfg.account,
                        command_id, seq)
            return
        self.stats.responses += 1
        fields: dict[str, Any] = {}
        name = "generic_nack"
        if command_id == SUBMIT_SM_RESP:
            # the hot path: the body is one C-octet string (absent on some errors)
            fields["message_id"] = frame[16:].split(b"\x00", 1)[0].decode("latin-1")
            name = "submit_sm_resp"
        elif command_id != GENERIC_NACK and len(frame) > 16:
            try:
                parsed = link.parse(frame)
                name = parsed.command
                for key in ("message_id", "final_date", "message_state", "error_code"):
                    v = getattr(parsed, key, None)
                    if v is not None:
                        fields[key] = v.decode("latin-1") if isinstance(v, bytes) else v
            except Exception as exc:
                self.stats.malformed += 1
                log.warning("smpp %s: unreadable answer to %s: %r", self.cfg.account,
                            p.command, exc)
                name = p.command + "_resp"
                fields["malformed"] = True
        elif command_id != GENERIC_NACK:
            name = p.command + "_resp"
        p.future.set_result(Resp(name, status, fields, p.sent_at, link.server))

    # --- closing -------------------------------------------------------------------------
    def _finish(self, link: Link) -> None:
        """Answer the receipts already read (the dispatcher applies them), then unbind."""
        deadline = time.monotonic() + CLOSE_ACK_S
        up = _Upkeep(last_tx=0.0, last_rx=0.0, next_renew=1e12)
        while time.monotonic() < deadline:
            self._flush_control(link, up)
            with self._inbox_cv:
                if self._rx_open == 0:
                    break
            select.select([self._wake_r], [], [], 0.05)
        self._flush_control(link, up)
        self._unbind(link)

    def _unbind(self, link: Link) -> None:
        """Unbind and wait for the answer; a receipt arriving meanwhile is applied and
        answered (not left for the server to offer again)."""
        try:
            seq, data = link.make("unbind")
            link.write(data)
            deadline = time.monotonic() + 2.0
            link.sock.settimeout(1.0)
            while time.monotonic() < deadline:
                frame = link.read_frame()
                _, cid, _, got = header(frame)
                if cid == UNBIND_RESP and got == seq:
                    break
                if cid in RECEIVED:
                    self._on_frame(link, frame, inline=True)
        except LINK_ERRORS:
            pass

    def _link_down(self, reason: str) -> None:
        """Fail every unanswered request; requests not yet written wait for the next bind."""
        window = list(self._window.values())
        self._window.clear()
        with self._lock:
            self._control.clear()
        if window or reason not in ("closing",):
            self.stats.link_losses += 1
            log.warning("smpp %s: link down (%s); %d request(s) unanswered", self.cfg.account,
                        reason, len(window))
        for p in window:
            if p.command == "enquire_link":
                continue
            p.future.set_exception(LinkLost(f"link lost before the answer ({reason})",
                                            p.sent_at))

    # --- the dispatcher thread -------------------------------------------------------------
    def _handle(self, body: bytes, command_id: int) -> int:
        try:
            return self.on_deliver(body, command_id)
        except Exception:
            log.exception("smpp %s: deliver_sm handler failed", self.cfg.account)
            return consts.SMPP_ESME_RSYSERR  # not taken: the server offers it again

    def _dispatch(self) -> None:
        while True:
            with self._inbox_cv:
                while not self._inbox and not self._stop.is_set():
                    self._inbox_cv.wait(0.5)
                if not self._inbox and self._stop.is_set() and not self._thread.is_alive():
                    return
                if not self._inbox:
                    self._inbox_cv.wait(0.05)
                    continue
                gen, seq, command_id, body = self._inbox.popleft()
            self._ack(gen, seq, command_id, self._handle(body, command_id))

    def _ack(self, gen: int, seq: int, command_id: int, status: int) -> None:
        data = answer(RECEIVED[command_id], seq, status)

        def send() -> None:
            link = self._link
            if link is None or self._generation != gen:
                return  # that link is gone: the server offers the receipt again
            link.write(data)

        with self._lock:
            self._control.append(send)
        with self._inbox_cv:
            self._rx_open -= 1
        self._wake()

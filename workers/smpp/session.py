"""One SMPP session per worker process: a thread that owns the link (``workers.smpp.link``).

Modules: this one (the public side, the link lifecycle, the dispatcher thread),
``serving.py`` (the loop over one bound link), ``requests.py`` (configuration, requests,
answers, errors).

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
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from smpplib import consts

from workers.smpp.link import RECEIVED, BindRefused, Link, answer
from workers.smpp.requests import (
    CLOSE_ACK_S,
    LINK_ERRORS,
    DeliverHandler,
    Lease,
    LinkLost,
    NotBound,
    Pending,
    Resp,
    SessionConfig,
    SessionError,
    SlotMissed,
    Stats,
)
from workers.smpp.serving import Serving

__all__ = ["BindRefused", "DeliverHandler", "Lease", "LinkLost", "NotBound", "Resp", "Session",
           "SessionConfig", "SessionError", "SlotMissed", "Stats"]

log = logging.getLogger("gonets.smpp")


class Session(Serving):
    def __init__(self, cfg: SessionConfig, on_deliver: DeliverHandler,
                 lease: Lease | None = None) -> None:
        self.cfg = cfg
        self.on_deliver = on_deliver
        self.lease = lease
        self.stats = Stats()
        self._lock = threading.Lock()
        #: requests not written yet: (not_before, order, pending), a heap
        self._queue: list[tuple[float, int, Pending]] = []
        self._order = itertools.count()
        self._control: deque[Callable[[], None]] = deque()
        self._window: dict[int, Pending] = {}
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
    def start(self) -> Session:
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
        p = Pending(command, params, fut, not_before=not_before, late_s=late_s)
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
            return int(self.on_deliver(body, command_id))
        except Exception:
            log.exception("smpp %s: deliver_sm handler failed", self.cfg.account)
            return int(consts.SMPP_ESME_RSYSERR)  # not taken: the server offers it again

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


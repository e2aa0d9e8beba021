"""The SMPP session thread's serving loop over one bound link (a mixin of ``Session``, which
owns the state): lease upkeep, answers to received PDUs, paced writes, link checks, reading
and acting on frames, and the closing handshake. Each step returns why the link ends, or ""."""

from __future__ import annotations

import heapq
import itertools
import logging
import select
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

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
    Link,
    answer,
    header,
)
from workers.smpp.requests import (
    CLOSE_ACK_S,
    LINK_ERRORS,
    Lease,
    Pending,
    Resp,
    SessionConfig,
    SlotMissed,
    Stats,
    Upkeep,
)

log = logging.getLogger("gonets.smpp")


class Serving:
    """The serving loop; the attributes are ``Session``'s."""

    cfg: SessionConfig
    lease: Lease | None
    stats: Stats
    _lock: threading.Lock
    _queue: list[tuple[float, int, Pending]]
    _control: deque[Callable[[], None]]
    _window: dict[int, Pending]
    _wake_r: Any
    _stop: threading.Event
    _bound: threading.Event
    _link: Link | None
    _generation: int
    _since_unbound: float
    _inbox: deque[tuple[int, int, int, bytes]]
    _inbox_cv: threading.Condition
    _rx_open: int

    def _link_down(self, reason: str) -> None:
        raise NotImplementedError  # Session's

    def _handle(self, body: bytes, command_id: int) -> int:
        raise NotImplementedError  # Session's

    def _serve(self, link: Link) -> None:
        self._link = link
        self._generation += 1
        self.stats.binds += 1
        self.stats.last_server = link.server
        self._bound.set()
        link.sock.settimeout(self.cfg.response_timeout_s)
        now = time.monotonic()
        up = Upkeep(last_tx=now, last_rx=now,
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
    def _renew_lease(self, up: Upkeep) -> str:
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

    def _flush_control(self, link: Link, up: Upkeep) -> str:
        """Answers to received PDUs, queued by the dispatcher."""
        while True:
            with self._lock:
                item = self._control.popleft() if self._control else None
            if item is None:
                return ""
            item()
            up.last_tx = time.monotonic()

    def _due(self) -> list[Pending]:
        """Requests whose slot has come, in slot order, as many as the window has room for."""
        out: list[Pending] = []
        room = self.cfg.max_pending - len(self._window)
        now = time.time()
        with self._lock:
            while self._queue and len(out) < room and self._queue[0][0] <= now:
                out.append(heapq.heappop(self._queue)[2])
        return [p for p in out if p.future.set_running_or_notify_cancel()]

    def _write_due(self, link: Link, up: Upkeep) -> str:
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

    def _encode(self, link: Link, group: list[Pending]) -> list[tuple[int, Pending, bytes]]:
        out = []
        for p in group:
            try:
                seq, data = link.make(p.command, **p.params)
            except Exception as exc:  # bad parameters: this request only
                p.future.set_exception(ValueError(f"cannot encode {p.command}: {exc!r}"))
                continue
            out.append((seq, p, data))
        return out

    def _in_window(self, encoded: list[tuple[int, Pending, bytes]], up: Upkeep) -> None:
        now = time.monotonic()
        for seq, p, _ in encoded:
            p.sent_at = now
            self._window[seq] = p
            if p.command == "submit_sm":
                self.stats.submits += 1
        up.last_tx = now

    def _check_link(self, link: Link, up: Upkeep) -> str:
        now = time.monotonic()
        if up.link_check_seq is not None and now - up.link_check_at > self.cfg.response_timeout_s:
            return "enquire_link unanswered"
        # the window is in sending order: its first entry is the oldest
        oldest = next(iter(self._window.values())).sent_at if self._window else None
        if oldest is not None and now - oldest > self.cfg.response_timeout_s:
            return "a request went unanswered"
        idle = now - max(up.last_tx, up.last_rx)
        if up.link_check_seq is None and idle >= self.cfg.enquire_link_s:
            seq, data = link.make("enquire_link")
            link.write(data)
            up.link_check_seq, up.link_check_at, up.last_tx = seq, now, now
        return ""

    def _timeout(self, up: Upkeep) -> float:
        now = time.monotonic()
        timeout = min(self.cfg.enquire_link_s - (now - max(up.last_tx, up.last_rx)),
                      up.next_renew - now, 1.0)
        with self._lock:
            head = self._queue[0][0] if self._queue else None
        if head is not None and len(self._window) < self.cfg.max_pending:
            timeout = min(timeout, head - time.time())  # wake at the next pacing slot
        return max(0.0, timeout)

    def _read(self, link: Link, up: Upkeep) -> str:
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
        if command_id in (ALERT_NOTIFICATION, UNBIND_RESP):
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
        up = Upkeep(last_tx=0.0, last_rx=0.0, next_renew=1e12)
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


"""One SMPP session per worker process: a thread that owns the smpplib client and its socket.

smpplib's socket is not safe to share between threads and smpplib leaves reconnection to its
user, so every byte goes through one thread (``gonets-smpp-<account>``):

    actor threads ──request()──▶ queue ──▶ session thread ──submit_sm──▶ server
         ▲                                   │  window: seq -> pending (≤ max_pending)
         └──── Future.result(timeout) ◀──────┘◀─submit_sm_resp / generic_nack (by sequence)
                                              ◀─deliver_sm ─▶ dispatcher thread (store) ─▶ ack
                                                              deliver_sm_resp sent after
                                                              the receipt is applied

* Binds as transceiver (or transmitter / receiver) with ``system_type`` flags; a bind lease
  (``workers.smpp.lease``) is held first when one is configured: without it the session
  stands by and binds nothing.
* enquire_link after ``enquire_link_s`` without traffic; a request unanswered for
  ``response_timeout_s`` (an enquire_link too) means the link is dead.
* A dead link fails every unanswered request with ``LinkLost`` (the caller decides: its submit
  may or may not have been taken); requests not yet written stay queued for the next bind.
  Reconnects back off exponentially with jitter, trying the hosts in turn (primary, backup).
* ``close()`` (SIGTERM): no new requests, waits for the window to drain, unbinds, releases
  the lease.
"""

from __future__ import annotations

import logging
import random
import select
import socket
import ssl
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

from smpplib import client as smpp_client
from smpplib import consts, smpp
from smpplib import exceptions as smpp_exc

log = logging.getLogger("gonets.smpp")

#: command_id of the PDUs the session reads itself (SMPP v3.4 §5.1.2.1)
GENERIC_NACK = 0x80000000
DELIVER_SM = 0x00000005
SUBMIT_SM_RESP = 0x80000004
ENQUIRE_LINK = 0x00000015
ENQUIRE_LINK_RESP = 0x80000015
UNBIND = 0x00000006
UNBIND_RESP = 0x80000006
DATA_SM = 0x00000103
ALERT_NOTIFICATION = 0x00000102
MAX_PDU = 64 * 1024

BIND_COMMANDS = {"transceiver": "bind_transceiver", "transmitter": "bind_transmitter",
                 "receiver": "bind_receiver"}


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


class BindRefused(SessionError):
    """The server refused the bind (``status`` is the SMPP command_status)."""

    def __init__(self, detail: str, status: int) -> None:
        super().__init__(detail)
        self.status = status


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

    def release(self) -> object: ...

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


# The receive side: called on the dispatcher thread with the deliver_sm body; returns the
# command_status for deliver_sm_resp (0 = taken; anything else asks the server to resend).
DeliverHandler = Callable[[bytes], int]


class _Client(smpp_client.Client):  # type: ignore[misc]
    """smpplib's client with a verified TLS handshake (SNI + hostname) and raw frame reads."""

    # smpplib's own attributes, typed here (smpplib ships no annotations)
    _socket: socket.socket | None
    _ssl_context: ssl.SSLContext | None
    host: str

    def _create_socket(self) -> socket.socket:
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.settimeout(self.timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._ssl_context is None:
            return raw
        return self._ssl_context.wrap_socket(raw, server_hostname=self.host)

    def connect(self) -> None:
        try:
            super().connect()
        except smpp_exc.ConnectionError:
            self._socket = None
            raise

    @property
    def sock(self) -> socket.socket:
        if self._socket is None:
            raise smpp_exc.ConnectionError("not connected")
        return self._socket

    _buf = b""

    def read_frame(self) -> bytes:
        """One whole PDU as bytes (blocking). Raises ConnectionError on EOF or a broken
        length."""
        while True:
            frame = self.next_frame()
            if frame is not None:
                return frame
            self.fill()

    def fill(self) -> None:
        """Read what the socket has (at least one byte; blocks up to the socket timeout)."""
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise smpp_exc.ConnectionError("the server closed the connection")
        self._buf += chunk

    def next_frame(self) -> bytes | None:
        """The next whole PDU already read, if any."""
        buf = self._buf
        if len(buf) < 4:
            return None
        (length,) = struct.unpack_from(">I", buf)
        if length < 16 or length > MAX_PDU:
            raise smpp_exc.ConnectionError(f"PDU length {length} out of range")
        if len(buf) < length:
            return None
        self._buf = buf[length:]
        return buf[:length]


@dataclass
class _Pending:
    command: str
    params: dict[str, Any]
    future: Future[Resp]
    sent_at: float = 0.0


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
    extra: dict[str, int] = field(default_factory=dict)


class Session:
    def __init__(self, cfg: SessionConfig, on_deliver: DeliverHandler,
                 lease: Lease | None = None) -> None:
        self.cfg = cfg
        self.on_deliver = on_deliver
        self.lease = lease
        self.stats = Stats()
        self._lock = threading.Lock()
        self._queue: deque[_Pending] = deque()
        self._control: deque[bytes | Callable[[], None]] = deque()
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
        self._client: _Client | None = None
        self._generation = 0
        self._host_index = 0
        self._since_unbound = time.monotonic()
        self._bind_error: BindRefused | None = None
        self._inbox: deque[tuple[int, int, bytes]] = deque()
        self._inbox_cv = threading.Condition()
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

    def request(self, command: str, params: dict[str, Any]) -> Future[Resp]:
        """Queue a request (``submit_sm``, ``query_sm``); the future gets its ``Resp`` or a
        SessionError. Cancel the future to withdraw a request not yet written."""
        if self._closing or self._stop.is_set():
            raise NotBound("the SMPP session is closing")
        if self._standby and self.lease is not None:
            raise NotBound("this process holds no bind lease for the account")
        fut: Future[Resp] = Future()
        with self._lock:
            self._queue.append(_Pending(command, params, fut))
        self._wake()
        return fut

    def close(self, drain_timeout_s: float = 30.0) -> None:
        """Stop taking requests, let the window drain, unbind, release the lease."""
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
        self._thread.join(timeout=10)
        with self._inbox_cv:
            self._inbox_cv.notify_all()
        self._dispatcher.join(timeout=5)
        with self._lock:
            queued = list(self._queue)
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

    # --- the session thread ----------------------------------------------------------------
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
                    client = self._connect(host, port)
                except (OSError, smpp_exc.ConnectionError, smpp_exc.PDUError, BindRefused,
                        ssl.SSLError) as exc:
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
                self._serve(client, f"{host}:{port}")
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

    def _connect(self, host: str, port: int) -> _Client:
        c = _Client(host, port, timeout=self.cfg.connect_timeout_s,
                    ssl_context=self.cfg.tls, allow_unknown_opt_params=True,
                    logger_name=f"gonets.smpp.wire.{self.cfg.account}")
        c.connect()
        try:
            resp = c._bind(BIND_COMMANDS[self.cfg.bind_mode],
                           system_id=self.cfg.system_id(), password=self.cfg.password(),
                           system_type=self.cfg.system_type,
                           interface_version=0x34, addr_ton=self.cfg.addr_ton,
                           addr_npi=self.cfg.addr_npi)
        except smpp_exc.PDUError as exc:
            c.disconnect()
            status = exc.args[1] if len(exc.args) > 1 else consts.SMPP_ESME_RBINDFAIL
            raise BindRefused(f"bind refused: {exc.args[0]}", int(status)) from exc
        except Exception:
            c.disconnect()
            raise
        peer = getattr(resp, "system_id", b"") or b""
        log.info("smpp %s: bound to %s:%s as %s (SMSC system_id %s)", self.cfg.account, host,
                 port, self.cfg.bind_mode,
                 peer.decode("ascii", "replace") if isinstance(peer, bytes) else peer)
        return c

    def _serve(self, client: _Client, server: str) -> None:
        self._client = client
        self._generation += 1
        gen = self._generation
        self.stats.binds += 1
        self.stats.last_server = server
        self._bound.set()
        sock = client.sock
        sock.settimeout(self.cfg.response_timeout_s)
        last_tx = last_rx = time.monotonic()
        link_check_seq: int | None = None
        link_check_at = 0.0
        next_renew = time.monotonic() + (self.lease.renew_every_s if self.lease else 1e12)
        reason = "closed"
        try:
            while True:
                now = time.monotonic()
                if self._stop.is_set():
                    reason = "closing"
                    self._unbind(client)
                    return
                # lease
                if self.lease is not None and now >= next_renew:
                    try:
                        held = self.lease.renew()
                    except Exception as exc:
                        log.warning("smpp %s: lease renew failed: %s", self.cfg.account, exc)
                        held = False
                    if not held:
                        reason = "bind lease lost"
                        self._unbind(client)
                        return
                    next_renew = now + self.lease.renew_every_s
                # control PDUs (deliver_sm_resp from the dispatcher)
                while True:
                    with self._lock:
                        item = self._control.popleft() if self._control else None
                    if item is None:
                        break
                    if callable(item):
                        item()
                        continue
                    sock.sendall(item)
                    last_tx = now
                # requests, while the window has room (written in one go)
                out = bytearray()
                while len(self._window) < self.cfg.max_pending:
                    with self._lock:
                        p = self._queue.popleft() if self._queue else None
                    if p is None:
                        break
                    if not p.future.set_running_or_notify_cancel():
                        continue  # withdrawn by its caller before it was written
                    try:
                        pdu = smpp.make_pdu(p.command, client=client, **p.params)
                        data = pdu.generate()
                    except Exception as exc:  # bad parameters: this request only
                        p.future.set_exception(
                            ValueError(f"cannot encode {p.command}: {exc!r}"))
                        continue
                    p.sent_at = time.monotonic()
                    self._window[pdu.sequence] = p
                    out += data
                    last_tx = p.sent_at
                    if p.command == "submit_sm":
                        self.stats.submits += 1
                    if len(out) > 1 << 16:
                        sock.sendall(out)
                        out.clear()
                if out:
                    sock.sendall(out)
                # liveness
                now = time.monotonic()
                if link_check_seq is not None and now - link_check_at > self.cfg.response_timeout_s:
                    reason = "enquire_link unanswered"
                    return
                # the window is in sending order: its first entry is the oldest
                oldest = next(iter(self._window.values())).sent_at if self._window else None
                if oldest is not None and now - oldest > self.cfg.response_timeout_s:
                    reason = "a request went unanswered"
                    return
                idle_s = now - max(last_tx, last_rx)
                if link_check_seq is None and idle_s >= self.cfg.enquire_link_s:
                    el = smpp.make_pdu("enquire_link", client=client)
                    sock.sendall(el.generate())
                    link_check_seq, link_check_at = el.sequence, now
                    last_tx = now
                # wait for input
                timeout = max(0.0, min(self.cfg.enquire_link_s - (now - max(last_tx, last_rx)),
                                       next_renew - now, 1.0))
                if self._window:
                    timeout = min(timeout, 1.0)
                ready = _pending(sock)
                if not ready:
                    r, _, _ = select.select([sock, self._wake_r], [], [], timeout)
                    if self._wake_r in r:
                        try:
                            while self._wake_r.recv(4096):
                                pass
                        except (BlockingIOError, OSError):
                            pass
                    ready = sock in r
                if ready:
                    client.fill()
                    last_rx = time.monotonic()
                # act on every whole PDU read so far
                while (frame := client.next_frame()) is not None:
                    outcome = self._on_frame(client, frame, gen, server)
                    if outcome == "unbind":
                        reason = "the server unbound us"
                        self.stats.kicked += 1
                        return
                    if outcome == "link_ok":
                        link_check_seq = None
        except (TimeoutError, OSError, smpp_exc.ConnectionError, smpp_exc.PDUError) as exc:
            reason = f"link error: {exc!r}"
        finally:
            self._bound.clear()
            self._since_unbound = time.monotonic()
            try:
                client.state = consts.SMPP_CLIENT_STATE_OPEN  # we unbound or lost it: no warning
                client.disconnect()
            except Exception:
                pass
            self._client = None
            self._link_down(reason)

    def _on_frame(self, client: _Client, frame: bytes, gen: int, server: str) -> str:
        _, command_id, status, seq = struct.unpack_from(">IIII", frame)
        if command_id in (DELIVER_SM, DATA_SM):
            self.stats.delivers += 1
            with self._inbox_cv:
                self._inbox.append((gen, seq, frame[16:]))
                self._inbox_cv.notify()
            return ""
        if command_id == ENQUIRE_LINK:
            resp = smpp.make_pdu("enquire_link_resp", client=client, sequence=seq)
            client.sock.sendall(resp.generate())
            return ""
        if command_id == ENQUIRE_LINK_RESP:
            self._window.pop(seq, None)
            return "link_ok"
        if command_id == UNBIND:
            resp = smpp.make_pdu("unbind_resp", client=client, sequence=seq)
            try:
                client.sock.sendall(resp.generate())
            except OSError:
                pass
            return "unbind"
        if command_id in (ALERT_NOTIFICATION, UNBIND_RESP):
            return ""
        if command_id & 0x80000000 == 0:
            # a request we do not serve: say so, never die of it
            nack = smpp.make_pdu("generic_nack", client=client, sequence=seq,
                                 status=consts.SMPP_ESME_RINVCMDID)
            client.sock.sendall(nack.generate())
            return ""
        p = self._window.pop(seq, None)
        if p is None:
            log.warning("smpp %s: answer 0x%08x to unknown sequence %s", self.cfg.account,
                        command_id, seq)
            return ""
        self.stats.responses += 1
        fields: dict[str, Any] = {}
        name = "generic_nack"
        if command_id == SUBMIT_SM_RESP:
            # the hot path: the body is one C-octet string (absent on some errors)
            fields["message_id"] = frame[16:].split(b"\x00", 1)[0].decode("latin-1")
            name = "submit_sm_resp"
        elif command_id != GENERIC_NACK and len(frame) > 16:
            try:
                parsed = smpp.parse_pdu(frame, client=client, allow_unknown_opt_params=True)
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
        p.future.set_result(Resp(name, status, fields, p.sent_at, server))
        return ""

    def _unbind(self, client: _Client) -> None:
        try:
            pdu = smpp.make_pdu("unbind", client=client)
            client.sock.sendall(pdu.generate())
            deadline = time.monotonic() + 2.0
            client.sock.settimeout(1.0)
            while time.monotonic() < deadline:
                frame = client.read_frame()
                _, cid, _, _ = struct.unpack_from(">IIII", frame)
                if cid == UNBIND_RESP:
                    break
                if cid in (DELIVER_SM, DATA_SM):
                    continue  # not acknowledged: the server offers it again later
        except (TimeoutError, OSError, smpp_exc.ConnectionError):
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

    # --- the dispatcher thread ---------------------------------------------------------------
    def _dispatch(self) -> None:
        while True:
            with self._inbox_cv:
                while not self._inbox and not self._stop.is_set():
                    self._inbox_cv.wait(0.5)
                if not self._inbox and self._stop.is_set():
                    return
                gen, seq, body = self._inbox.popleft()
            try:
                status = self.on_deliver(body)
            except Exception:
                log.exception("smpp %s: deliver_sm handler failed", self.cfg.account)
                status = consts.SMPP_ESME_RSYSERR  # not taken: the server offers it again
            self._ack(gen, seq, status)

    def _ack(self, gen: int, seq: int, status: int) -> None:
        header = struct.pack(">IIII", 17, 0x80000005, status, seq) + b"\x00"

        def send() -> None:
            client = self._client
            if client is None or self._generation != gen:
                return  # that link is gone: the server offers the receipt again
            client.sock.sendall(header)

        with self._lock:
            self._control.append(send)
        self._wake()


def _pending(sock: socket.socket) -> bool:
    return isinstance(sock, ssl.SSLSocket) and sock.pending() > 0



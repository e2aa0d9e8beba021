"""SMSC SMPP sandbox: an SMPP v3.4 server that behaves as shared/providers/smsc-smpp.md says.

Written from the SMPP v3.4 specification with ``struct`` (no SMPP library, nothing of Gonets),
so a test that pits the Gonets client against it proves the two agree on the wire.

What it does, on real sockets:
  * listeners: ``primary`` (smpp), ``backup`` (smpp2) and, when asked, ``tls`` (port 3443's
    role; a self-signed certificate made with the ``openssl`` command);
  * bind_transmitter / bind_receiver / bind_transceiver with login checks (0x0E bad password,
    0x0F unknown system_id, 0x05 already bound); ``system_type`` flags ``MCONn``, ``ISO``,
    ``SINGLE`` (comma-separated).  One bind per login unless ``MCONn``: a bind beyond n kicks
    the oldest (it gets ``unbind`` and is closed);
  * submit_sm(_resp): data_coding 0 is GSM 03.38 (ISO-8859-1 under ``ISO``), 3/4 ISO-8859-1,
    8 UCS-2; UDH or SAR concatenation is glued: every part of a long message gets the same
    message id and one receipt comes for the whole (per-part ids and receipts under
    ``SINGLE``); parts not complete within a minute fail with err 241;
  * throughput ``rate_per_s`` per login (default 30) answered with 0x58 ESME_RTHROTTLED;
    an identical submit (same source, destination, text) within 60 s answered with 0x45
    ESME_RSUBMITFAIL and not sent; more than 50 messages to one number with gaps under 30 s:
    accepted, then a receipt UNDELIV err 251;
  * deliver_sm receipts after ``receipt_delay_s`` with the text ``id sub dlvrd submit date done
    date stat err`` and TLVs receipted_message_id, message_state, network_error_code and
    SMSC's 0x2000 (cost) 0x2001 (flags) 0x2002 (parts) 0x2003 (mccmnc) 0x2004 (extra state);
    receipts wait for a receiving bind of the login and are resent until acknowledged;
  * ``__HLR__`` answered with an HLR result receipt; query_sm; enquire_link; unbind;
    generic_nack for unknown commands and broken headers; the link is dropped after
    ``idle_timeout_s`` (2 minutes) without a PDU from the client.

Control (HTTP JSON on the control port):
    POST /_sandbox/control {"reset": true, "down": ["primary"], "drop": true,
        "drop_after_submits": 5 (once), "drop_every_submits": 50 (again and again),
        "resp_delay_s": 0.02, "mute_enquire_link": true, "receipts_as_data_sm": true,
        "receipts_on_unbind": true (held receipts go out just before unbind_resp),
        "receipt_delay_s": 0.1, "rate_per_s": 30, "phone_error": {"375291112233": 1},
        "phone_error_times": {"375291112244": [220, 1]} (the next N messages to it),
        "id_format": "hex", "idle_timeout_s": 120, "hold_receipts": true,
        "inject_deliver_sm": ["<hex body>"], "next_id": 16}
    ``id_format``: "dec" (default), "hex" (submit_sm_resp ids in hex, receipts in decimal, as
    many SMSCs write them), "hex_all" (both in hex); ``next_id``: the id the next message gets
    (ids start at 100000), so a test can make the small ids of a new account.
    GET  /_sandbox/state   counters (``injected_acked`` / ``injected_refused``: how injected
                           PDUs were answered), binds now and at most, messages
    GET  /_sandbox/messages every accepted message (id, phone, text, parts, status)
    GET  /_sandbox/submits  every submit_sm read: {at (its receive time), login, phone,
                            status (non-zero: unreadable)}
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import os
import shutil
import socket
import ssl
import struct
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any

from sandbox._http import MultiPortServer, arrival_time
from sandbox.smpp_desk import Message, MessageDesk
from sandbox.smpp_wire import (
    MAX_PDU,
    NAME,
    RALYBND,
    RBINDFAIL,
    RINVBNDSTS,
    RINVCMDID,
    RINVCMDLEN,
    RINVPASWD,
    RINVSYSID,
    ROK,
    BadPdu,
    Conn,
    cstr,
    make_cert,
    parse_fields,
    pdu,
    resp_name,
    tlv,
)

__all__ = ["Conn", "Message", "SmppSandbox", "main", "serve"]


class SmppSandbox(MessageDesk):
    def __init__(self, *, accounts: dict[str, str] | None = None, price: float = 1.5) -> None:
        self.accounts = accounts or {"gonets": "sandbox", "gonets2": "sandbox"}
        self.price = price
        self.lock = threading.RLock()
        self.timers: list[tuple[float, int, Callable[[], None]]] = []
        self.timer_seq = itertools.count()
        self.timer_cv = threading.Condition(self.lock)
        self.listeners: dict[str, socket.socket] = {}
        self.addresses: dict[str, tuple[str, int]] = {}
        self.ssl_ctx: ssl.SSLContext | None = None
        self.cert_file: str | None = None
        self.stopping = False
        self.threads: list[threading.Thread] = []
        self.reset()

    def reset(self) -> None:
        with self.lock:
            for c in list(getattr(self, "conns", [])):
                c.close()
            self.conns: list[Conn] = []
            self.messages: dict[str, Message] = {}
            self.by_part: dict[tuple[str, str, int, int], str] = {}
            self.next_id = 100000
            self.down: set[str] = set()
            self.drop_after_submits = 0
            self.drop_every_submits = 0
            self.receipts_as_data_sm = False
            self.receipts_on_unbind = False
            #: every submit_sm read: (time.time() when read, login, phone, command_status)
            self.submit_log: list[tuple[float, str, str, int]] = []
            self.resp_delay_s = 0.0
            self.mute_enquire_link = False
            self.receipt_delay_s = 0.1
            self.rate_per_s = 30.0
            self.phone_error: dict[str, int] = {}
            self.phone_error_times: dict[str, list[int]] = {}
            self.duplicate_window_s = 60.0
            self.id_format = "dec"
            self.idle_timeout_s = 120.0
            self.hold_receipts = False
            self.recent: dict[tuple[str, str, str, bytes], tuple[float, str]] = {}
            self.rate_window: dict[str, deque[float]] = defaultdict(deque)
            self.flood: dict[tuple[str, str], tuple[float, int]] = {}
            self.max_binds: dict[str, int] = defaultdict(int)
            self.counters: dict[str, int] = defaultdict(int)
            self.undelivered: dict[str, deque[str]] = defaultdict(deque)

    # --- lifecycle
    def start(self, host: str = "127.0.0.1", ports: dict[str, int] | None = None,
              tls: bool = False) -> SmppSandbox:
        ports = dict(ports or {"primary": 0, "backup": 0})
        if tls:
            ports.setdefault("tls", 0)
            self._make_cert(host)
        for name, port in ports.items():
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
            s.listen(64)
            s.settimeout(0.2)
            self.listeners[name] = s
            self.addresses[name] = s.getsockname()[:2]
            self._thread(self._accept_loop, name, s)
        self._thread(self._timer_loop)
        self._thread(self._idle_loop)
        return self

    def _thread(self, fn: Callable[..., None], *args: Any) -> None:
        t = threading.Thread(target=fn, args=args, daemon=True, name=f"smpp-sandbox-{fn.__name__}")
        t.start()
        self.threads.append(t)

    def _make_cert(self, host: str) -> None:
        self.ssl_ctx, self.cert_file = make_cert(host)

    def stop(self) -> None:
        self.stopping = True
        with self.lock:
            self.timer_cv.notify_all()
            conns = list(self.conns)
        for c in conns:
            c.close()
        for s in self.listeners.values():
            s.close()
        for t in self.threads:
            t.join(timeout=2)
        if self.cert_file:
            shutil.rmtree(os.path.dirname(self.cert_file), ignore_errors=True)

    def info(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: f"{h}:{p}" for name, (h, p) in self.addresses.items()}
        if self.cert_file:
            out["ca_file"] = self.cert_file
        return out

    # --- threads
    def _accept_loop(self, name: str, lsock: socket.socket) -> None:
        while not self.stopping:
            try:
                sock, _ = lsock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if name in self.down:
                sock.close()
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if name == "tls" and self.ssl_ctx is not None:
                try:
                    sock.settimeout(5)
                    sock = self.ssl_ctx.wrap_socket(sock, server_side=True)
                except (ssl.SSLError, OSError):
                    self.counters["tls_failures"] += 1
                    sock.close()
                    continue
            sock.settimeout(None)
            conn = Conn(self, sock, name)
            with self.lock:
                self.conns.append(conn)
                self.counters["connections"] += 1
            self._thread(self._serve, conn)

    def _timer_loop(self) -> None:
        with self.lock:
            while not self.stopping:
                now = time.monotonic()
                if self.timers and self.timers[0][0] <= now:
                    _, _, fn = heapq.heappop(self.timers)
                    try:
                        fn()
                    except Exception as exc:  # a sandbox bug must not stop the clock
                        self.counters["timer_errors"] += 1
                        print(f"smpp sandbox timer error: {exc!r}", flush=True)
                    continue
                wait = self.timers[0][0] - now if self.timers else 0.5
                self.timer_cv.wait(min(wait, 0.5))

    def _idle_loop(self) -> None:
        while not self.stopping:
            time.sleep(0.2)
            now = time.monotonic()
            with self.lock:
                idle = [c for c in self.conns if c.alive and now - c.last_rx > self.idle_timeout_s]
            for c in idle:
                self.counters["idle_drops"] += 1
                self._drop(c)

    def later(self, delay_s: float, fn: Callable[[], None]) -> None:
        with self.lock:
            heapq.heappush(self.timers, (time.monotonic() + delay_s, next(self.timer_seq), fn))
            self.timer_cv.notify()

    def _drop(self, c: Conn) -> None:
        c.close()
        with self.lock:
            if c in self.conns:
                self.conns.remove(c)
            for key in c.pending_receipts.values():  # unacknowledged receipts go out again
                self.undelivered[c.login or ""].append(key)
            c.pending_receipts.clear()
            c.receipt_command.clear()
        if c.login:
            self.later(0.05, lambda: self._flush_receipts(c.login or ""))

    def _recv_exact(self, c: Conn, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = c.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        return buf

    def _serve(self, c: Conn) -> None:
        try:
            while c.alive and not self.stopping:
                c.rx_at = arrival_time(c.sock)  # when the PDU's bytes reached this host
                head = self._recv_exact(c, 16)
                length, cmd, status, seq = struct.unpack(">IIII", head)
                if length < 16 or length > MAX_PDU:
                    self.counters["generic_nacks"] += 1
                    c.send(pdu("generic_nack", seq, status=RINVCMDLEN))
                    break
                body = self._recv_exact(c, length - 16) if length > 16 else b""
                c.last_rx = time.monotonic()
                if c.listener in self.down:
                    break
                self._handle(c, cmd, status, seq, body)
        except (ConnectionError, OSError):
            pass
        finally:
            self._drop(c)

    # --- commands
    def _handle(self, c: Conn, cmd: int, status: int, seq: int, body: bytes) -> None:
        name = NAME.get(cmd)
        self.counters[f"pdu_{name or 'unknown'}"] += 1
        if name is None:
            c.send(pdu("generic_nack", seq, status=RINVCMDID))
            return
        if name.startswith("bind_") and not name.endswith("_resp"):
            self._bind(c, name, seq, body)
        elif name == "enquire_link":
            if not self.mute_enquire_link:
                c.send(pdu("enquire_link_resp", seq))
        elif name == "unbind":
            if self.receipts_on_unbind and c.login:  # what was held comes just before the answer
                self.hold_receipts = False
                self._flush_receipts(c.login)
            c.send(pdu("unbind_resp", seq))
            self.later(1.0, lambda: self._drop(c))  # the client closes first, normally
        elif name in ("unbind_resp", "enquire_link_resp", "generic_nack"):
            pass
        elif name in ("deliver_sm_resp", "data_sm_resp"):
            with self.lock:
                sent_as = c.receipt_command.pop(seq, "deliver_sm")
                if name != sent_as + "_resp":  # answered with the wrong command: not taken
                    self.counters["receipts_wrong_resp"] += 1
                    status = RINVCMDID
                key = c.pending_receipts.pop(seq, None)
                if key is not None and status == ROK:
                    self.counters["receipts_acked"] += 1
                elif key is not None:  # refused: offered again a little later
                    self.counters["receipts_refused"] += 1
                    self.undelivered[c.login or ""].append(key)
                    login = c.login or ""
                    self.later(1.0, lambda: self._flush_receipts(login))
                else:  # an injected PDU's answer (a real server would offer a refused one again)
                    self.counters["injected_acked" if status == ROK else "injected_refused"] += 1
        elif not c.login:
            c.send(pdu(resp_name(name), seq, status=RINVBNDSTS))
        elif name == "submit_sm":
            self._submit(c, seq, body)
        elif name == "query_sm":
            self._query(c, seq, body)
        else:
            c.send(pdu("generic_nack", seq, status=RINVCMDID))

    def _bind(self, c: Conn, name: str, seq: int, body: bytes) -> None:
        resp = name + "_resp"
        try:
            f, _ = parse_fields(body, (("system_id", "c"), ("password", "c"),
                                       ("system_type", "c"), ("interface_version", "1"),
                                       ("addr_ton", "1"), ("addr_npi", "1"),
                                       ("address_range", "c")))
        except BadPdu:
            c.send(pdu(resp, seq, status=RBINDFAIL))
            return
        if c.login:
            c.send(pdu(resp, seq, status=RALYBND))
            return
        login = f["system_id"]
        if login not in self.accounts:
            self.counters["bind_refused"] += 1
            c.send(pdu(resp, seq, cstr("SMSC"), status=RINVSYSID))
            return
        if self.accounts[login] != f["password"]:
            self.counters["bind_refused"] += 1
            c.send(pdu(resp, seq, cstr("SMSC"), status=RINVPASWD))
            return
        flags = {x.strip().upper() for x in f["system_type"].split(",") if x.strip()}
        mcon = 1
        for fl in flags:
            if fl.startswith("MCON") and fl[4:].isdigit() and 1 <= int(fl[4:]) <= 9:
                mcon = int(fl[4:])
        kicked: list[Conn] = []
        with self.lock:
            c.login, c.flags, c.mcon, c.bound_at = login, flags, mcon, time.monotonic()
            c.mode = {"bind_transmitter": "tx", "bind_receiver": "rx",
                      "bind_transceiver": "trx"}[name]
            same = [x for x in self.conns if x.login == login and x.alive and x is not c]
            while len(same) >= mcon:
                old = min(same, key=lambda x: x.bound_at)
                same.remove(old)
                kicked.append(old)
            bound = len(same) + 1
            self.max_binds[login] = max(self.max_binds[login], bound)
            self.counters["binds"] += 1
        for old in kicked:
            self.counters["kicked"] += 1
            old.send(pdu("unbind", next(old.seq)))
            self._drop(old)
        c.send(pdu(resp, seq, cstr("SMSC") + tlv(0x0210, b"\x34")))
        if c.receives:
            self.later(0.01, lambda: self._flush_receipts(login))


def serve(host: str = "127.0.0.1", *, tls: bool = False,
          ports: dict[str, int] | None = None, control_port: int = 0,
          **kw: Any) -> tuple[SmppSandbox, MultiPortServer]:
    sb = SmppSandbox(**kw).start(host, ports, tls=tls)
    http = MultiPortServer(sb.control, host, [control_port]).start()
    return sb, http


def main() -> None:
    ap = argparse.ArgumentParser(description="SMSC SMPP sandbox")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=2775)
    ap.add_argument("--backup-port", type=int, default=2776)
    ap.add_argument("--control-port", type=int, default=8775)
    ap.add_argument("--tls", action="store_true")
    a = ap.parse_args()
    sb, http = serve(a.host, tls=a.tls, ports={"primary": a.port, "backup": a.backup_port},
                     control_port=a.control_port)
    print(json.dumps({**sb.info(), "control": http.urls()[0]}), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        sb.stop()
        http.stop()


if __name__ == "__main__":
    main()

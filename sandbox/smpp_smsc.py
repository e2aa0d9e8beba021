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
        "drop_after_submits": 5, "resp_delay_s": 0.02, "mute_enquire_link": true,
        "receipt_delay_s": 0.1, "rate_per_s": 30, "phone_error": {"375291112233": 1},
        "phone_error_times": {"375291112244": [220, 1]} (the next N messages to it),
        "id_format": "hex", "idle_timeout_s": 120, "hold_receipts": true,
        "inject_deliver_sm": ["<hex body>"]}
    GET  /_sandbox/state   counters, binds now and at most, messages
    GET  /_sandbox/messages every accepted message (id, phone, text, parts, status)
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
import subprocess
import tempfile
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sandbox._http import MultiPortServer, Request, Response

# --- the wire (SMPP v3.4 §4, §5) ---------------------------------------------------------

CMD = {
    "generic_nack": 0x80000000, "bind_receiver": 0x00000001, "bind_receiver_resp": 0x80000001,
    "bind_transmitter": 0x00000002, "bind_transmitter_resp": 0x80000002,
    "query_sm": 0x00000003, "query_sm_resp": 0x80000003, "submit_sm": 0x00000004,
    "submit_sm_resp": 0x80000004, "deliver_sm": 0x00000005, "deliver_sm_resp": 0x80000005,
    "unbind": 0x00000006, "unbind_resp": 0x80000006, "enquire_link": 0x00000015,
    "enquire_link_resp": 0x80000015, "bind_transceiver": 0x00000009,
    "bind_transceiver_resp": 0x80000009,
}
NAME = {v: k for k, v in CMD.items()}
ROK, RINVMSGLEN, RINVCMDLEN, RINVCMDID, RINVBNDSTS, RALYBND = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05
RSYSERR, RINVSRCADR, RINVDSTADR, RINVPASWD, RINVSYSID = 0x08, 0x0A, 0x0B, 0x0E, 0x0F
RSUBMITFAIL, RTHROTTLED, RQUERYFAIL, RBINDFAIL = 0x45, 0x58, 0x67, 0x0D
MAX_PDU = 64 * 1024

SUBMIT_FIELDS = (
    ("service_type", "c"), ("source_addr_ton", "1"), ("source_addr_npi", "1"),
    ("source_addr", "c"), ("dest_addr_ton", "1"), ("dest_addr_npi", "1"),
    ("destination_addr", "c"), ("esm_class", "1"), ("protocol_id", "1"),
    ("priority_flag", "1"), ("schedule_delivery_time", "c"), ("validity_period", "c"),
    ("registered_delivery", "1"), ("replace_if_present_flag", "1"), ("data_coding", "1"),
    ("sm_default_msg_id", "1"), ("short_message", "sm"),
)
STATE = {"ENROUTE": 1, "DELIVRD": 2, "EXPIRED": 3, "DELETED": 4, "UNDELIV": 5, "ACCEPTD": 6,
         "UNKNOWN": 7, "REJECTD": 8}
GSM_BASIC = ("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
             "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
GSM_EXT = {0x0A: "\f", 0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\", 0x3C: "[", 0x3D: "~",
           0x3E: "]", 0x40: "|", 0x65: "€"}
#: text prefix -> SMSC message type (0x2001 bits 0-3)
TYPES = {"__HLR__": 4, "__PING__": 5, "__CALL__": 7, "__MAIL__": 8, "__VIBER__": 10,
         "__SOC__": 12}


class BadPdu(ValueError):
    pass


def pdu(command: str, seq: int, body: bytes = b"", status: int = ROK) -> bytes:
    return struct.pack(">IIII", 16 + len(body), CMD[command], status, seq) + body


def cstr(s: str | bytes) -> bytes:
    return (s.encode("latin-1") if isinstance(s, str) else s) + b"\x00"


def tlv(tag: int, value: bytes) -> bytes:
    return struct.pack(">HH", tag, len(value)) + value


def parse_fields(body: bytes, table: tuple[tuple[str, str], ...]
                 ) -> tuple[dict[str, Any], dict[int, bytes]]:
    out: dict[str, Any] = {}
    pos = 0
    for name, kind in table:
        if kind == "c":
            end = body.find(b"\x00", pos)
            if end < 0 or end - pos > 64:
                raise BadPdu(f"{name} not terminated")
            out[name] = body[pos:end].decode("latin-1")
            pos = end + 1
        elif kind == "1":
            if pos >= len(body):
                raise BadPdu(f"{name} missing")
            out[name] = body[pos]
            pos += 1
        else:
            if pos >= len(body):
                raise BadPdu("sm_length missing")
            n = body[pos]
            pos += 1
            if pos + n > len(body):
                raise BadPdu("short_message too long")
            out[name] = body[pos:pos + n]
            pos += n
    tlvs: dict[int, bytes] = {}
    while pos < len(body):
        if pos + 4 > len(body):
            raise BadPdu("truncated TLV")
        tag, n = struct.unpack_from(">HH", body, pos)
        pos += 4
        if pos + n > len(body):
            raise BadPdu("TLV too long")
        tlvs[tag] = body[pos:pos + n]
        pos += n
    return out, tlvs


def gsm_decode(data: bytes) -> str:
    out = []
    esc = False
    for b in data:
        if esc:
            out.append(GSM_EXT.get(b, "?"))
            esc = False
        elif b == 0x1B:
            esc = True
        elif b < 128:
            out.append(GSM_BASIC[b])
        else:
            out.append("?")
    return "".join(out)


def decode_text(data: bytes, dc: int, iso: bool) -> str:
    if dc == 8:
        return data.decode("utf-16-be", "replace")
    if dc in (3, 4) or (dc == 0 and iso):
        return data.decode("latin-1")
    return gsm_decode(data)


# --- state ------------------------------------------------------------------------------------

@dataclass
class Message:
    id: int
    login: str
    phone: str
    sender: str
    text: str
    parts_expected: int
    submitted: float
    registered: bool
    data_coding: int
    kind: int = 0
    parts: dict[int, str] = field(default_factory=dict)
    status: str = "ENROUTE"
    err: int = 0
    done: float = 0.0
    receipts_sent: int = 0
    part_of: str = ""


class Conn:
    def __init__(self, server: SmppSandbox, sock: socket.socket, listener: str) -> None:
        self.server = server
        self.sock = sock
        self.listener = listener
        self.lock = threading.Lock()
        self.login: str | None = None
        self.mode = ""  # "tx" | "rx" | "trx"
        self.flags: set[str] = set()
        self.mcon = 1
        self.alive = True
        self.last_rx = time.monotonic()
        self.bound_at = 0.0
        self.seq = itertools.count(1)
        self.pending_receipts: dict[int, str] = {}  # our deliver_sm seq -> message key

    @property
    def receives(self) -> bool:
        return self.alive and self.mode in ("rx", "trx")

    def send(self, data: bytes) -> bool:
        with self.lock:
            if not self.alive:
                return False
            try:
                self.sock.sendall(data)
                return True
            except OSError:
                self.alive = False
                return False

    def close(self) -> None:
        with self.lock:
            self.alive = False
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                self.sock.close()
            except OSError:
                pass


class SmppSandbox:
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
        d = tempfile.mkdtemp(prefix="smpp-sandbox-tls-")
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-keyout", key, "-out", cert, "-subj", "/CN=localhost",
             "-addext", f"subjectAltName=DNS:localhost,IP:{host}"],
            check=True, capture_output=True)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.ssl_ctx = ctx
        self.cert_file = cert

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
            c.send(pdu("unbind_resp", seq))
            c.close()
        elif name in ("unbind_resp", "enquire_link_resp", "generic_nack"):
            pass
        elif name == "deliver_sm_resp":
            with self.lock:
                key = c.pending_receipts.pop(seq, None)
                if key is not None and status == ROK:
                    self.counters["receipts_acked"] += 1
                elif key is not None:  # refused: offered again a little later
                    self.counters["receipts_refused"] += 1
                    self.undelivered[c.login or ""].append(key)
                    login = c.login or ""
                    self.later(1.0, lambda: self._flush_receipts(login))
        elif not c.login:
            c.send(pdu(_resp(name), seq, status=RINVBNDSTS))
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

    def _next_id(self) -> str:
        with self.lock:
            self.next_id += 1
            return str(self.next_id)

    def _wire_id(self, mid: str) -> str:
        return format(int(mid), "X") if self.id_format == "hex" else mid

    def _submit(self, c: Conn, seq: int, body: bytes) -> None:
        try:
            f, tl = parse_fields(body, SUBMIT_FIELDS)
        except BadPdu:
            c.send(pdu("submit_sm_resp", seq, cstr(""), status=RINVMSGLEN))
            return
        if c.mode == "rx":
            c.send(pdu("submit_sm_resp", seq, cstr(""), status=RINVBNDSTS))
            return
        phone = f["destination_addr"]
        if not phone.isdigit() or not 7 <= len(phone) <= 15:
            c.send(pdu("submit_sm_resp", seq, cstr(""), status=RINVDSTADR))
            return
        login = c.login or ""
        now = time.monotonic()
        with self.lock:
            w = self.rate_window[login]
            while w and now - w[0] >= 1.0:
                w.popleft()
            if len(w) >= self.rate_per_s:
                self.counters["throttled"] += 1
                resp = pdu("submit_sm_resp", seq, cstr(""), status=RTHROTTLED)
                self._reply(c, resp)
                return
            w.append(now)
            sm: bytes = f["short_message"] or tl.get(0x0424, b"")
            udh = None
            if f["esm_class"] & 0x40 and sm and sm[0] >= 5 and sm[1] in (0, 8):
                hl = sm[0]
                if sm[1] == 0:
                    udh = (sm[3], sm[4], sm[5])
                else:
                    udh = (int.from_bytes(sm[3:5], "big"), sm[5], sm[6])
                sm = sm[1 + hl:]
            elif 0x020C in tl and 0x020E in tl and 0x020F in tl:
                udh = (int.from_bytes(tl[0x020C], "big"), tl[0x020E][0], tl[0x020F][0])
            iso = "ISO" in c.flags
            text = decode_text(sm, f["data_coding"], iso)
            # the duplicate rule: one identical request per minute
            dkey = (login, f["source_addr"], phone, sm + bytes(udh or ()))
            prev = self.recent.get(dkey)
            if prev is not None and now - prev[0] < self.duplicate_window_s:
                self.counters["duplicates"] += 1
                self._reply(c, pdu("submit_sm_resp", seq, cstr(""), status=RSUBMITFAIL))
                return
            self.recent[dkey] = (now, "")
            if len(self.recent) > 100_000:
                self.recent = {k: v for k, v in self.recent.items() if now - v[0] < 60}
            registered = bool(f["registered_delivery"] & 0x03)
            single = "SINGLE" in c.flags
            if udh is not None and not single:
                ref, total, seqn = udh
                pkey = (login, phone, ref, total)
                key = self.by_part.get(pkey)
                msg = self.messages.get(key) if key else None
                if msg is None or seqn in msg.parts or msg.done:
                    mid = self._next_id()
                    msg = Message(int(mid), login, phone, f["source_addr"], "", total, now,
                                  registered, f["data_coding"])
                    self.messages[mid] = msg
                    self.by_part[pkey] = mid
                    self.later(60.0, lambda m=msg: self._parts_timeout(m))
                msg.parts[seqn] = text
                key = str(msg.id)
            else:
                mid = self._next_id()
                msg = Message(int(mid), login, phone, f["source_addr"], text, 1, now,
                              registered, f["data_coding"])
                msg.parts[1] = text
                if udh is not None:
                    msg.part_of = f"{udh[0]}/{udh[1]}:{udh[2]}"
                self.messages[mid] = msg
                key = mid
            self.counters["submits_accepted"] += 1
            self.counters["parts"] += 1
            complete = len(msg.parts) >= msg.parts_expected
            if complete:
                msg.text = "".join(msg.parts[i] for i in sorted(msg.parts))
                self.counters["messages"] += 1
                self._accepted(msg)
            drop = False
            if self.drop_after_submits > 0:
                self.drop_after_submits -= 1
                drop = self.drop_after_submits == 0
        if drop:
            # the link dies with this submit taken but unanswered (and anything queued too)
            self.counters["dropped_links"] += 1
            self._drop(c)
            return
        self._reply(c, pdu("submit_sm_resp", seq, cstr(self._wire_id(key))))

    def _reply(self, c: Conn, data: bytes) -> None:
        if self.resp_delay_s > 0:
            self.later(self.resp_delay_s, lambda: c.send(data))
        else:
            c.send(data)

    def _accepted(self, msg: Message) -> None:
        """A whole message is in: decide its fate and schedule its receipt."""
        for prefix, kind in TYPES.items():
            if msg.text.startswith(prefix):
                msg.kind = kind
        fk = (msg.login, msg.phone)
        last, n = self.flood.get(fk, (0.0, 0))
        n = n + 1 if msg.submitted - last < 30 else 1
        self.flood[fk] = (msg.submitted, n)
        if n > 50:
            msg.status, msg.err = "UNDELIV", 251
        elif self.phone_error_times.get(msg.phone, [0, 0])[1] > 0:
            err, left = self.phone_error_times[msg.phone]
            self.phone_error_times[msg.phone] = [err, left - 1]
            msg.status, msg.err = "UNDELIV", err
        elif msg.phone in self.phone_error:
            err = self.phone_error[msg.phone]
            msg.status, msg.err = ("REJECTD" if err in (248, 249, 252, 253) else "UNDELIV"), err
        else:
            msg.status, msg.err = "DELIVRD", 0
        self.later(self.receipt_delay_s, lambda: self._finish(msg))

    def _parts_timeout(self, msg: Message) -> None:
        if len(msg.parts) < msg.parts_expected and not msg.done:
            msg.status, msg.err = "UNDELIV", 241
            self._finish(msg)

    def _finish(self, msg: Message) -> None:
        with self.lock:
            if msg.done:
                return
            msg.done = time.time()
            if msg.registered:
                self.undelivered[msg.login].append(str(msg.id))
        self._flush_receipts(msg.login)

    def _flush_receipts(self, login: str) -> None:
        with self.lock:
            if self.hold_receipts:
                return
            q = self.undelivered[login]
            rx = [c for c in self.conns if c.login == login and c.receives]
            if not rx:
                return
            out: list[tuple[Conn, bytes]] = []
            i = 0
            while q:
                key = q.popleft()
                msg = self.messages.get(key)
                if msg is None:
                    continue
                c = rx[i % len(rx)]
                i += 1
                seq = next(c.seq)
                c.pending_receipts[seq] = key
                msg.receipts_sent += 1
                self.counters["receipts_sent"] += 1
                out.append((c, pdu("deliver_sm", seq, self._receipt_body(msg))))
        for c, data in out:
            c.send(data)

    def _receipt_body(self, msg: Message) -> bytes:
        wid = str(msg.id)
        stamp = time.strftime("%y%m%d%H%M", time.localtime(msg.done or time.time()))
        sub = time.strftime("%y%m%d%H%M", time.localtime(time.time()))
        dlvrd = msg.parts_expected if msg.status == "DELIVRD" else 0
        if msg.kind == 4:
            text = (f"id:{wid} stat:{msg.status} err:{msg.err:03d} imsi:257021234567890 "
                    f"msc:375290000010 mcc:257 mnc:02 cn:Belarus net:MTS+Belarus rcn: rnet:")
        else:
            text = (f"id:{wid} sub:{msg.parts_expected:03d} dlvrd:{dlvrd:03d} submit date:{sub} "
                    f"done date:{stamp} stat:{msg.status} err:{msg.err:03d}")
        sm = text.encode("latin-1")
        flags = msg.kind
        cost = f"{self.price * msg.parts_expected:.4f}"[:6]
        body = (cstr("") + bytes((1, 1)) + cstr(msg.phone) + bytes((5, 0)) + cstr(msg.sender)
                + bytes((0x04, 0, 0)) + cstr("") + cstr("") + bytes((0, 0, 0, 0, len(sm))) + sm)
        body += tlv(0x001E, cstr(wid))
        body += tlv(0x0427, bytes((STATE[msg.status],)))
        body += tlv(0x0423, bytes((3,)) + msg.err.to_bytes(2, "big"))
        body += tlv(0x2000, cstr(cost))
        body += tlv(0x2001, flags.to_bytes(2, "big"))
        body += tlv(0x2002, msg.parts_expected.to_bytes(2, "big"))
        body += tlv(0x2003, cstr("25702"))
        return body

    def _query(self, c: Conn, seq: int, body: bytes) -> None:
        try:
            f, _ = parse_fields(body, (("message_id", "c"), ("source_addr_ton", "1"),
                                       ("source_addr_npi", "1"), ("source_addr", "c")))
        except BadPdu:
            c.send(pdu("query_sm_resp", seq, cstr("") + cstr("") + b"\x00\x00", status=RINVMSGLEN))
            return
        raw = f["message_id"]
        mid = str(int(raw, 16)) if self.id_format == "hex" and raw else raw
        with self.lock:
            msg = self.messages.get(mid)
            if msg is None or msg.login != c.login:
                self._reply(c, pdu("query_sm_resp", seq, cstr(raw) + cstr("") + b"\x00\x00",
                                   status=RQUERYFAIL))
                return
            state = STATE[msg.status] if msg.done else STATE["ENROUTE"]
            final = time.strftime("%y%m%d%H%M%S000+", time.localtime(msg.done)) if msg.done else ""
            self._reply(c, pdu("query_sm_resp", seq, cstr(raw) + cstr(final)
                               + bytes((state, msg.err & 0xFF))))

    # --- control
    def control(self, req: Request) -> Response:
        if req.path == "/_sandbox/state":
            with self.lock:
                binds: dict[str, int] = defaultdict(int)
                for c in self.conns:
                    if c.alive and c.login:
                        binds[c.login] += 1
                return Response.json({"counters": dict(self.counters),
                                      "binds": dict(binds), "max_binds": dict(self.max_binds),
                                      "binds_by_listener": _by_listener(self.conns),
                                      "messages": len(self.messages)})
        if req.path == "/_sandbox/messages":
            with self.lock:
                return Response.json([
                    {"id": str(m.id), "login": m.login, "phone": m.phone, "text": m.text,
                     "sender": m.sender, "parts": m.parts_expected, "got_parts": len(m.parts),
                     "status": m.status, "err": m.err, "receipts_sent": m.receipts_sent,
                     "data_coding": m.data_coding, "part_of": m.part_of}
                    for m in self.messages.values()])
        if req.path != "/_sandbox/control" or req.method != "POST":
            return Response(404, "not found")
        body = req.json() if req.body else {}
        if body.get("reset"):
            self.reset()
        with self.lock:
            for key in ("drop_after_submits", "resp_delay_s", "mute_enquire_link",
                        "receipt_delay_s", "rate_per_s", "id_format", "idle_timeout_s",
                        "hold_receipts", "duplicate_window_s"):
                if key in body:
                    setattr(self, key, body[key])
            if "phone_error" in body:
                self.phone_error = {str(k): int(v) for k, v in body["phone_error"].items()}
            if "phone_error_times" in body:  # {"375...": [err, how many messages]}
                self.phone_error_times = {str(k): [int(v[0]), int(v[1])]
                                          for k, v in body["phone_error_times"].items()}
            if "down" in body:
                self.down = set(body["down"])
            drop = [c for c in self.conns if c.alive] if body.get("drop") else []
            drop += [c for c in self.conns if c.listener in self.down]
            logins = list(self.undelivered)
        for c in drop:
            self._drop(c)
        if "inject_deliver_sm" in body:  # raw deliver_sm bodies (hex) to every receiving bind
            for hexbody in body["inject_deliver_sm"]:
                for c in [c for c in self.conns if c.receives]:
                    self.counters["injected"] += 1
                    c.send(pdu("deliver_sm", next(c.seq), bytes.fromhex(hexbody)))
        if "hold_receipts" in body and not body["hold_receipts"]:
            for login in logins:
                self._flush_receipts(login)
        return Response.json({"ok": True})


def _by_listener(conns: list[Conn]) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for c in conns:
        if c.alive and c.login:
            out[c.listener] += 1
    return dict(out)


def _resp(name: str) -> str:
    return name + "_resp" if name + "_resp" in CMD else "generic_nack"


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

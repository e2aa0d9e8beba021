"""The SMPP sandbox's wire: PDU layout (SMPP v3.4 §4, §5), text decoding, and one client
connection.  Written from the specification with ``struct``: no SMPP library, nothing of
Gonets."""

from __future__ import annotations

import itertools
import os
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
from typing import Any

CMD = {
    "generic_nack": 0x80000000, "bind_receiver": 0x00000001, "bind_receiver_resp": 0x80000001,
    "bind_transmitter": 0x00000002, "bind_transmitter_resp": 0x80000002,
    "query_sm": 0x00000003, "query_sm_resp": 0x80000003, "submit_sm": 0x00000004,
    "submit_sm_resp": 0x80000004, "deliver_sm": 0x00000005, "deliver_sm_resp": 0x80000005,
    "unbind": 0x00000006, "unbind_resp": 0x80000006, "enquire_link": 0x00000015,
    "enquire_link_resp": 0x80000015, "bind_transceiver": 0x00000009,
    "bind_transceiver_resp": 0x80000009, "data_sm": 0x00000103, "data_sm_resp": 0x80000103,
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



class Conn:
    def __init__(self, server: Any, sock: socket.socket, listener: str) -> None:
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
        self.receipt_command: dict[int, str] = {}
        #: when the PDU being handled reached this host (the kernel's receive timestamp)
        self.rx_at = 0.0  # our receipt seq -> deliver_sm | data_sm

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


def resp_name(name: str) -> str:
    """The answer's command name to a request (generic_nack if it has none)."""
    return name + "_resp" if name + "_resp" in CMD else "generic_nack"


def make_cert(host: str) -> tuple[ssl.SSLContext, str]:
    """A self-signed certificate for ``host`` (made with the ``openssl`` command): the server
    context and the certificate's file, which a client trusts as its CA."""
    d = tempfile.mkdtemp(prefix="smpp-sandbox-tls-")
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", key, "-out", cert, "-subj", "/CN=localhost",
         "-addext", f"subjectAltName=DNS:localhost,IP:{host}"],
        check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx, cert

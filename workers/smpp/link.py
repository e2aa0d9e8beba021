"""One SMPP connection: our own socket (TLS verified with SNI and the host name), whole PDU
frames, and the bind.

smpplib is used only as a PDU codec (``smpp.make_pdu`` / ``smpp.parse_pdu`` with its public
``SimpleSequenceGenerator``); no private attribute of smpplib is touched, so an smpplib upgrade
can only change how PDUs are encoded, which the sandbox tests check on the wire.
"""

from __future__ import annotations

import socket
import ssl
import struct
import time
from typing import Any

from smpplib import smpp
from smpplib.client import SimpleSequenceGenerator

#: command_id of the PDUs the session reads itself (SMPP v3.4 §5.1.2.1)
GENERIC_NACK = 0x80000000
DELIVER_SM = 0x00000005
DELIVER_SM_RESP = 0x80000005
SUBMIT_SM_RESP = 0x80000004
ENQUIRE_LINK = 0x00000015
ENQUIRE_LINK_RESP = 0x80000015
UNBIND = 0x00000006
UNBIND_RESP = 0x80000006
DATA_SM = 0x00000103
DATA_SM_RESP = 0x80000103
ALERT_NOTIFICATION = 0x00000102
#: the incoming requests that carry a message or a receipt, and the answer each one takes
RECEIVED = {DELIVER_SM: DELIVER_SM_RESP, DATA_SM: DATA_SM_RESP}
MAX_PDU = 64 * 1024
ESME_RBINDFAIL = 0x0D

BIND_COMMANDS = {"transceiver": "bind_transceiver", "transmitter": "bind_transmitter",
                 "receiver": "bind_receiver"}


class LinkError(ConnectionError):
    """The connection broke: EOF, a broken PDU length, or no bind answer in time."""


class BindRefused(Exception):
    """The server refused the bind (``status`` is the SMPP command_status)."""

    def __init__(self, detail: str, status: int) -> None:
        super().__init__(detail)
        self.status = status


def header(frame: bytes) -> tuple[int, int, int, int]:
    """(command_length, command_id, command_status, sequence_number) of a frame."""
    length, command_id, status, seq = struct.unpack_from(">IIII", frame)
    return int(length), int(command_id), int(status), int(seq)


def answer(command_id: int, seq: int, status: int = 0, body: bytes = b"\x00") -> bytes:
    """A response PDU with a C-octet-string body (message_id; empty by default)."""
    return struct.pack(">IIII", 16 + len(body), command_id, status, seq) + body


class Link:
    """A connected socket and its read buffer. Used by one thread at a time."""

    def __init__(self, sock: socket.socket, server: str) -> None:
        self.sock = sock
        self.server = server
        self.seq = SimpleSequenceGenerator()
        self._buf = b""

    @classmethod
    def open(cls, host: str, port: int, *, timeout_s: float,
             tls: ssl.SSLContext | None = None) -> Link:
        raw = socket.create_connection((host, port), timeout=timeout_s)
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock = tls.wrap_socket(raw, server_hostname=host) if tls is not None else raw
        except BaseException:
            raw.close()
            raise
        return cls(sock, f"{host}:{port}")

    # --- PDUs
    def make(self, command: str, **params: Any) -> tuple[int, bytes]:
        """(sequence, bytes) of a new request PDU. Raises on parameters it cannot encode."""
        pdu = smpp.make_pdu(command, client=self.seq, **params)
        return int(pdu.sequence), bytes(pdu.generate())

    def parse(self, frame: bytes) -> Any:
        return smpp.parse_pdu(frame, client=self.seq, allow_unknown_opt_params=True)

    def write(self, data: bytes) -> None:
        self.sock.sendall(data)

    # --- frames
    def fill(self) -> None:
        """Read what the socket has (at least one byte; blocks up to the socket timeout)."""
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise LinkError("the server closed the connection")
        self._buf += chunk

    def next_frame(self) -> bytes | None:
        """The next whole PDU already read, if any."""
        buf = self._buf
        if len(buf) < 4:
            return None
        (length,) = struct.unpack_from(">I", buf)
        if length < 16 or length > MAX_PDU:
            raise LinkError(f"PDU length {length} out of range")
        if len(buf) < length:
            return None
        self._buf = buf[length:]
        return buf[:length]

    def read_frame(self) -> bytes:
        """One whole PDU (blocking up to the socket timeout per read)."""
        while True:
            frame = self.next_frame()
            if frame is not None:
                return frame
            self.fill()

    def pending(self) -> bool:
        """Bytes already decrypted but not read (TLS): select() would not see them."""
        return isinstance(self.sock, ssl.SSLSocket) and self.sock.pending() > 0

    # --- bind
    def bind(self, mode: str, *, timeout_s: float, **params: Any) -> Any:
        """Send the bind and wait for its answer; raises BindRefused or LinkError."""
        command = BIND_COMMANDS[mode]
        seq, data = self.make(command, interface_version=0x34, **params)
        self.write(data)
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LinkError(f"no answer to {command}")
            self.sock.settimeout(left)
            try:
                frame = self.read_frame()
            except TimeoutError:
                raise LinkError(f"no answer to {command}") from None
            _, command_id, status, got_seq = header(frame)
            if got_seq != seq or not command_id & 0x80000000:
                continue  # nothing else is expected before the bind answer
            if status != 0 or command_id == GENERIC_NACK:
                raise BindRefused(f"bind refused: status 0x{status:02x}",
                                  status or ESME_RBINDFAIL)
            return self.parse(frame)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

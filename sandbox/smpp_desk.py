"""The SMPP sandbox's message desk: what SMSC does with a submit (throughput, duplicates,
long messages glued, the flood rule, errors on demand), its receipts (deliver_sm, or data_sm
when asked) and query_sm, and the HTTP control surface. A mixin of ``SmppSandbox``, which
owns the state and the connections (``sandbox/smpp_smsc.py``)."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sandbox._http import Request, Response
from sandbox.smpp_wire import (
    RINVBNDSTS,
    RINVDSTADR,
    RINVMSGLEN,
    ROK,
    RQUERYFAIL,
    RSUBMITFAIL,
    RTHROTTLED,
    STATE,
    SUBMIT_FIELDS,
    TYPES,
    BadPdu,
    Conn,
    cstr,
    decode_text,
    parse_fields,
    pdu,
    tlv,
)


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



class MessageDesk:
    """Submits, receipts and control; the attributes are ``SmppSandbox``'s."""

    lock: Any
    conns: list[Conn]
    messages: dict[str, Message]
    counters: Any
    submit_log: list[tuple[float, str, str, int]]

    def _next_id(self) -> str:
        with self.lock:
            self.next_id += 1
            return str(self.next_id)

    def _wire_id(self, mid: str) -> str:
        return format(int(mid), "X") if self.id_format in ("hex", "hex_all") else mid

    def _receipt_id(self, mid: str) -> str:
        return format(int(mid), "X") if self.id_format == "hex_all" else mid

    def _submit(self, c: Conn, seq: int, body: bytes) -> None:
        at = c.rx_at or time.time()
        log = self.submit_log
        try:
            f, tl = parse_fields(body, SUBMIT_FIELDS)
        except BadPdu:
            log.append((at, c.login or "", "", RINVMSGLEN))
            c.send(pdu("submit_sm_resp", seq, cstr(""), status=RINVMSGLEN))
            return
        log.append((at, c.login or "", str(f["destination_addr"]), ROK))
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
            if self.drop_every_submits > 0:
                self.counters["since_drop"] += 1
                if self.counters["since_drop"] >= self.drop_every_submits:
                    self.counters["since_drop"] = 0
                    drop = True
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
                command = "data_sm" if self.receipts_as_data_sm else "deliver_sm"
                c.receipt_command[seq] = command
                body = self._receipt_body(msg, data_sm=command == "data_sm")
                out.append((c, pdu(command, seq, body)))
        for c, data in out:
            c.send(data)

    def _receipt_body(self, msg: Message, data_sm: bool = False) -> bytes:
        wid = self._receipt_id(str(msg.id))
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
        if data_sm:  # SMPP v3.4 §4.7.1: no short_message; the text goes in message_payload
            body = (cstr("") + bytes((1, 1)) + cstr(msg.phone) + bytes((5, 0)) + cstr(msg.sender)
                    + bytes((0x04, 0, 0)) + tlv(0x0424, sm))
        else:
            body = (cstr("") + bytes((1, 1)) + cstr(msg.phone) + bytes((5, 0))
                    + cstr(msg.sender) + bytes((0x04, 0, 0)) + cstr("") + cstr("")
                    + bytes((0, 0, 0, 0, len(sm))) + sm)
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
        try:
            mid = str(int(raw, 16)) if self.id_format in ("hex", "hex_all") and raw else raw
        except ValueError:
            mid = raw
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
        if req.path == "/_sandbox/submits":
            with self.lock:
                return Response.json([{"at": at, "login": login, "phone": phone, "status": st}
                                      for at, login, phone, st in self.submit_log])
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
            for key in ("drop_after_submits", "drop_every_submits", "receipts_as_data_sm",
                        "receipts_on_unbind",
                        "resp_delay_s", "mute_enquire_link",
                        "receipt_delay_s", "rate_per_s", "id_format", "idle_timeout_s",
                        "hold_receipts", "duplicate_window_s"):
                if key in body:
                    setattr(self, key, body[key])
            if "next_id" in body:  # the id the next message gets
                self.next_id = int(body["next_id"]) - 1
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

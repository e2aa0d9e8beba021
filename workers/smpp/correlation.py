"""Which message an SMPP receipt is for: submit ids, early receipts and orphans, in Redis.

The provider's own protocol state, never a message record: what a matched receipt does to its
message is a ``core.facts.DeliveryReceipt`` handed to the provider's ``FactSink``
(``workers/outcomes.py`` in a worker).

Message ids.  A ``submit_sm_resp`` id is stored under the one value it stands for
(``receipt.id_key``) as ``<ns>:smpp:mid:<account>:<key> -> <gonets id>``, and the message's
ids as ``<ns>:smpp:gid:<account>:<gonets id> -> [ids]``; a receipt looks itself up under the
value of its own id.  Each side (submit_sm_resp, receipt) is read in decimal or hex as the
account's ids are written there: configured (``submit_id_format``, ``receipt_id_format``) or
learned ("auto": hex once the server gives an id with a letter a-f on that side, kept as
``<ns>:smpp:idfmt:<account>:<side>``), never both ways: "16" on a decimal account is never
also 0x16 = 22, so a receipt for message 22 that overtakes its answer waits for it instead of
landing on message 16.  A receipt whose id is not known yet (it overtook its
submit_sm_resp, or came on another process's bind) is kept as
``<ns>:smpp:early:<account>:<key>`` and applied when the id is stored; both sides write first
and read the other second, so one of them always sees the other.

Orphans.  A submit whose answer was lost is an "orphan" (``<ns>:smpp:orphan:<account>:<phone>``,
zset id -> when) that a receipt for that number with an unknown id is matched to; a receipt for
a number kept early (``<ns>:smpp:earlyphone:<account>:<phone>``) is found by an orphan marked
later.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import redis
from smpplib import consts

from core.facts import DeliveryReceipt, Incoming, StatusReport
from core.keys import Keys
from core.provider_options import SmppAccountOptions
from core.settings import Account
from core.smsc_status import with_err
from core.timing import now_ms
from workers.providers.base import FactSink, Outgoing
from workers.smpp import codec
from workers.smpp.link import DATA_SM, DELIVER_SM
from workers.smpp.receipt import (
    DATA_SM_FIELDS,
    DELIVER_SM_FIELDS,
    Malformed,
    Receipt,
    id_key,
    looks_hex,
    parse_deliver_sm,
    receipt_fields,
    receipt_from,
)

log = logging.getLogger("gonets.smpp")

OK = int(consts.SMPP_ESME_ROK)
#: how long the id mappings live (a receipt later than this finds nothing)
MAP_TTL_S = 7 * 24 * 3600
#: how long a receipt that came before its submit's answer is kept
EARLY_TTL_S = 24 * 3600
#: the two sides an id comes from, each with its own way of writing ids
SUBMIT, RECEIPT = "submit", "receipt"
def receipt_fact(msg_id: str, rc: Receipt, opts: SmppAccountOptions,
                 provider: str) -> DeliveryReceipt:
    """What a receipt says about its message, as a fact (SMSC's err table decides, the one
    the HTTP status poll and webhook read too: ``core/smsc_status.py``)."""
    report = with_err(StatusReport(status=rc.status, raw=rc.raw,
                                   error_code=str(rc.err) if rc.err else None,
                                   fields=receipt_fields(rc)), rc.err, provider)
    return DeliveryReceipt(msg_id=msg_id, provider_id=rc.message_id, report=report,
                           resend_after_s=opts.retry_receipt_delay_s, resends=opts.resubmits)


class Correlation:
    """Receipts to messages for one SMPP account (shared by every process through Redis)."""

    def __init__(self, account: Account, opts: SmppAccountOptions, client: redis.Redis, *,
                 namespace: str, sink: FactSink | None, provider: str) -> None:
        self.account = account
        self.opts = opts
        self.r = client
        self.ns = namespace
        self.keys = Keys(namespace)
        self.sink = sink
        self.provider = provider
        #: the sides whose ids are hex, once known (it never goes back)
        self._hex_sides: set[str] = set()

    # --- keys (core/keys.py)
    def _k(self, kind: str, part: str) -> str:
        return self.keys.smpp(kind, self.account.name, part)

    def _mid_key(self, key: str) -> str:
        return self._k("mid", key)

    def _early_key(self, key: str) -> str:
        return self._k("early", key)

    def _orphan_key(self, phone: str) -> str:
        return self._k("orphan", phone)

    def _gid_key(self, msg_id: str) -> str:
        return self._k("gid", msg_id)

    def _get(self, key: str) -> str | None:
        v = self.r.get(key)  # Correlation is the store of the smpp:* keys (core/keys.py)
        return None if v is None else str(v)

    # --- how the server writes ids
    def _hex(self, side: str, seen: str) -> bool:
        """Whether ``side``'s ids are hex on this account; ``seen`` is an id the server just
        gave on that side (one with a letter a-f teaches "hex" to an "auto" account)."""
        fmt = self.opts.submit_id_format if side == SUBMIT else self.opts.receipt_id_format
        if fmt != "auto":
            return fmt == "hex"
        if side in self._hex_sides:
            return True
        key = self._k("idfmt", side)
        if looks_hex(seen):
            if self.r.set(key, "hex", nx=True):
                log.info("smpp %s: the server writes %s ids in hex (%s): read as hex from now on",
                         self.account.name, side, seen)
        elif self._get(key) != "hex":  # nor has another process learned it
            return False
        self._hex_sides.add(side)
        return True

    def _key(self, side: str, provider_id: str) -> str | None:
        return id_key(provider_id, self._hex(side, provider_id))

    # --- the submit side
    def remember(self, msg_id: str, provider_ids: list[str], side: str = SUBMIT) -> None:
        """Store provider id -> message id, then apply receipts that came first. ``side``:
        where the ids come from (a submit_sm_resp, or a receipt matched by number)."""
        pipe = self.r.pipeline()
        keys: list[str] = []
        for pid in provider_ids:
            k = self._key(side, pid)
            if k is not None:
                keys.append(k)
                pipe.set(self._mid_key(k), msg_id, ex=MAP_TTL_S)
        pipe.set(self._gid_key(msg_id), json.dumps(provider_ids), ex=MAP_TTL_S)
        for k in keys:
            pipe.getdel(self._early_key(k))
        res = pipe.execute()
        for raw in res[len(keys) + 1:]:
            if raw:
                self._apply(msg_id, _receipt_load(raw))

    def provider_ids(self, msg_id: str) -> list[str] | None:
        """The server's ids of a message (its submit_sm_resp or matched receipt), if known."""
        known = self._get(self._gid_key(msg_id))
        return [str(x) for x in json.loads(known)] if known else None

    def orphan(self, msg: Outgoing) -> str | None:
        """Mark ``msg`` as sent with its answer lost; a receipt for its number with an unknown
        id will be taken as its own.  Returns that receipt's id if one came already."""
        key = self._orphan_key(msg.phone)
        self.r.zadd(key, {msg.id: now_ms()}, nx=True)
        self.r.expire(key, int(self.opts.receipt_wait_s) + 3600)
        early = self._k("earlyphone", msg.phone)
        while True:
            popped = self.r.lpop(early)
            if popped is None:
                return None
            pid = str(popped)
            k = self._key(RECEIPT, pid)
            if k is not None and self.r.exists(self._early_key(k)):
                self.r.zrem(key, msg.id)
                log.warning("smpp %s: receipt %s matched by number to %s (its answer was lost)",
                            self.account.name, pid, msg.id)
                self.remember(msg.id, [pid], side=RECEIPT)
                return pid

    def forget_orphan(self, msg: Outgoing) -> None:
        """No receipt can come for it any more: it was never taken."""
        self.r.zrem(self._orphan_key(msg.phone), msg.id)

    # --- the receiving side (the session's dispatcher thread)
    def on_deliver(self, body: bytes, command_id: int = DELIVER_SM) -> int:
        """Take one deliver_sm (or data_sm); returns the status of its answer."""
        what = "data_sm" if command_id == DATA_SM else "deliver_sm"
        try:
            pdu = parse_deliver_sm(body, DATA_SM_FIELDS if command_id == DATA_SM
                                   else DELIVER_SM_FIELDS)
        except Malformed as exc:
            log.warning("smpp %s: malformed %s refused: %s", self.account.name, what, exc)
            return int(consts.SMPP_ESME_RINVMSGLEN)
        if not pdu.is_receipt:
            self._incoming(pdu)
            return OK
        try:
            rc = receipt_from(pdu)
        except Malformed as exc:
            log.warning("smpp %s: unreadable receipt dropped: %s", self.account.name, exc)
            return OK  # resending it would not make it readable
        self.on_receipt(rc, phone=pdu.str("source_addr"))
        return OK

    def on_receipt(self, rc: Receipt, phone: str = "") -> None:
        k = self._key(RECEIPT, rc.message_id)
        msg_id = self._get(self._mid_key(k)) if k is not None else None
        if msg_id:
            self._apply(msg_id, rc)
            return
        if phone and self._match_orphan(phone, rc):
            return
        if k is None:
            log.warning("smpp %s: receipt with an unusable id dropped", self.account.name)
            return
        # overtook its submit_sm_resp: keep it; remember() applies it. Then look again, in
        # case the mapping landed between our read and our write.
        raw = _receipt_dump(rc, phone)
        pipe = self.r.pipeline()
        pipe.set(self._early_key(k), raw, ex=EARLY_TTL_S)
        if phone:  # an orphan registered later finds it by number
            pipe.rpush(self._k("earlyphone", phone), rc.message_id)
            pipe.expire(self._k("earlyphone", phone), EARLY_TTL_S)
        pipe.execute()
        msg_id = self._get(self._mid_key(k))
        if msg_id:
            if self.r.delete(self._early_key(k)):  # its own key, as above
                self._apply(msg_id, rc)
            return
        log.info("smpp %s: receipt for unknown id %s kept for its submit",
                 self.account.name, rc.message_id)

    def _match_orphan(self, phone: str, rc: Receipt) -> bool:
        """Give the receipt to the oldest open orphan of its number; False if none takes it."""
        key = self._orphan_key(phone)
        for mid in [str(m) for m in self.r.zrange(key, 0, -1)]:
            self.r.zrem(key, mid)
            if not self._apply(mid, rc):
                continue  # gone or final already: not the one the receipt is for
            self.remember(mid, [rc.message_id], side=RECEIPT)
            log.warning("smpp %s: receipt %s matched by number to %s (its answer was lost)",
                        self.account.name, rc.message_id, mid)
            return True
        return False

    def _apply(self, msg_id: str, rc: Receipt) -> bool:
        assert self.sink is not None, "SmppProvider.start() requires a fact sink"
        return self.sink.receipt(self.account,
                                 receipt_fact(msg_id, rc, self.opts, self.provider))

    def _incoming(self, pdu: Any) -> None:
        text = codec.decode(pdu.short_message, pdu.int("data_coding"), iso=self.opts.iso,
                            udhi=bool(pdu.int("esm_class") & 0x40))
        assert self.sink is not None, "SmppProvider.start() requires a fact sink"
        self.sink.incoming(self.account, Incoming(sender=pdu.str("source_addr"),
                                                  recipient=pdu.str("destination_addr"),
                                                  text=text))


def _receipt_dump(rc: Receipt, phone: str) -> str:
    d = dict(rc.__dict__)
    d["phone"] = phone
    return json.dumps(d)


def _receipt_load(raw: str) -> Receipt:
    d = json.loads(raw)
    d.pop("phone", None)
    return Receipt(**d)

"""Every Redis key Gonets writes: its name, type, lifetime and writer, in one table.

``ns`` is ``Settings.namespace`` (``gonets``).  ``TABLE`` below is the list a reader scans:
pattern, type, TTL and what it holds, grouped by the module that writes it.  Every module
builds its keys through ``Keys(ns)`` (one method per row); Lua scripts get them as
``KEYS[...]`` and name them in their header.  dramatiq's own keys live under ``ns-q:``
(``core/broker.py``): written by dramatiq, not listed; ``Keys.queue…`` name the ones the
metrics read.

``Keys.describe(key)`` finds a key's row; the tests check that every key a run leaves in
Redis has one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: the low-balance alert's kind: it belongs to the balance check, not to an account incident
LOW_BALANCE = "low_balance"
#: the alert of an account whose lookups (of messages whose outcome is unknown) keep failing;
#: it pauses nothing and closes when a lookup is answered
LOOKUPS_FAILING = "lookups_failing"


@dataclass(frozen=True)
class KeyDoc:
    pattern: str  #: after ``ns:``; ``<name>`` is one variable part
    type: str
    ttl: str
    what: str


TABLE: tuple[KeyDoc, ...] = tuple(KeyDoc(*row) for row in (
    # --- message records: core/store.py, core/lua/*.lua
    ("msg:<id>", "hash", "retention_s once final", "a message record"),
    ("msg:<id>:history", "list", "retention_s once final", "its JSON status events"),
    ("events", "stream", "capped", "every status change of messages"),
    ("nonfinal", "zset", "-", "id -> next status check (ms)"),
    ("stats", "hash", "-", "<acct>|<status>|<code> -> status changes"),
    ("idem:<acct>:<key>", "string", "the caller's window",
     "<producer>:<key> (producers/duplicates.py) -> message id"),
    ("seq:<acct>", "string", "-", "counter for provider-side numeric ids"),
    ("pid:<acct>:<provider id>", "string", "retention_s", "provider's id -> message id"),
    # --- payments: core/payments.py, workers/payments.py
    ("pay:<id>", "hash", "retention_s once final", "a payment"),
    ("pay:<id>:history", "list", "retention_s once final", "its JSON status events"),
    ("pay:<id>:lock", "string", "3 request timeouts", "the worker holding the payment"),
    ("pay:due:<acct>", "zset", "-", "id -> next pending lookup (ms)"),
    ("mtscheck:<id>", "hash", "retention_s once done", "an MTS Money service check"),
    ("mtscheck:<id>:history", "list", "retention_s once done", "its JSON events"),
    ("mtscheck:open", "zset", "-", "checks without a result yet"),
    ("payments:events", "stream", "capped", "every status change of payments and checks"),
    # --- accounts: workers/runtime.py (pause, incident, alerts), workers/actors.py (balance),
    # core/usage.py
    ("pause:<acct>", "string", "account_pause_s", "the pool is paused (JSON: why, since)"),
    ("incident:<acct>", "string", "until the account works again", "an open incident (JSON)"),
    ("resumed:<acct>", "string", "1 h", "when the account last worked again (ms)"),
    ("alert:<acct>:<kind>", "string", "1 h (low_balance: until it recovers)",
     "one alert per incident and kind"),
    ("balance:<acct>", "string", "-", "the last balance read"),
    # --- routes: core/routing.py (written by workers/outcomes.py)
    ("unreach:<acct>", "string", "until a send works", "when a run of failed tries began (ms)"),
    ("failovers", "hash", "-", "<route>|<from account>|<reason> -> messages moved"),
    ("price:<acct>", "string", "-", "price per part the provider last reported"),
    ("usage:<acct>:<day>", "hash", "400 days", "<kind>:messages, <kind>:parts per UTC day"),
    # --- traffic rules: workers/traffic/
    ("pace:<acct>", "string", "a few send intervals", "GCRA theoretical arrival time (µs)"),
    ("pace:<acct>:slow", "hash", "hold + recovery", "the slowed-down share of the rate"),
    ("pace:<acct>:count", "hash", "-", "pacing slots booked / forfeited (parts; metrics)"),
    ("flood:<family>:<phone>", "hash", "the flood gap + 1 s", "messages to one number"),
    # --- SMPP: workers/smpp/ (leases through core/locks.py)
    ("smpp:lease:<login>:<slot>", "string", "the lease ttl (10 s)", "bind lease holder"),
    ("smpp:mid:<acct>:<key>", "string", "7 days", "receipt id -> message id"),
    ("smpp:gid:<acct>:<id>", "string", "7 days", "message id -> its parts' SMSC ids (JSON)"),
    ("smpp:early:<acct>:<key>", "string", "24 h", "a receipt that came before its response"),
    ("smpp:earlyphone:<acct>:<phone>", "list", "24 h", "ids of early receipts per number"),
    ("smpp:orphan:<acct>:<phone>", "zset", "receipt wait + 1 h", "submits with no SMSC id"),
    ("smpp:resend:<acct>:<id>", "string", "300 s", "a resend of this message is under way"),
    ("smpp:idfmt:<acct>:<side>", "string", "none", "submit/receipt ids are hex (learned)"),
    ("smpp:incoming", "stream", "capped", "mobile-originated messages"),
    # --- providers: workers/providers/mts_rest.py
    ("oauth:<provider>:<client id>", "string", "token life - margin", "the shared OAuth token"),
    ("oauth:<provider>:<client id>:lock", "string", "30 s", "one token refresher at a time"),
    # --- producers: producers/duplicates.py, producers/consent.py, producers/index.py
    ("producer:<name>:sms", "zset", "trimmed past retention", "the producer's message ids"),
    ("dup:<acct>:<fingerprint>", "string", "the duplicate window (60 s)",
     "first id of the same producer's identical request"),
    ("consent:<digits>", "hash", "-", "a subscriber's opt-in state"),
    ("consent:<digits>:history", "list", "-", "its changes (JSON)"),
    # --- HTTP API: producers/http/ (auth, sms, idempotency, payments, callbacks)
    ("token:<sha256>", "hash", "-", "a producer token (id, producer, scopes)"),
    ("tokens", "hash", "-", "token id -> sha256"),
    ("tokens:revoked", "pub/sub channel", "none (not stored)",
     "the digest of each revoked token; API processes forget it"),
    ("producer:<name>", "hash", "-",
     "its callback secret; whether its callbacks may reach private addresses"),
    ("http-idem:<producer>:<sha256>", "string", "24 h", "an Idempotency-Key's answer"),
    ("owner:<kind>:<id>", "string", "retention_s", "producer owning a payment or check"),
    ("cb:q:<id>", "zset", "-", "a record's undelivered callbacks"),
    ("cb:due", "zset", "-", "id -> when its oldest callback is next tried (ms)"),
    ("cb:try:<id>", "hash", "deleted when sent", "attempts and first try of the oldest"),
    ("cb:lock:<id>", "string", "120 s", "one callback deliverer per record"),
    # --- Bitrix24: producers/http/bitrix24_portal.py
    ("b24:<producer>", "hash", "-", "a portal installation and its OAuth tokens"),
    ("b24:lock:<producer>", "string", "15 s", "one portal token refresh at a time"),
    ("b24:done:<msg id>", "set", "retention_s", "Bitrix statuses reported for a message"),
    # --- scheduler: scheduler/leader.py, scheduler/service.py
    ("scheduler:leader", "string", "scheduler_lock_ttl_s", "the leader lease holder"),
    ("scheduler:fired:<job>:<ms>", "string", "8 days", "dedupe key of one fire"),
    ("scheduler:last:<job>", "string", "-", "the job's latest fire time (ms)"),
    ("scheduler:runs", "stream", "capped", "one entry per run"),
    # --- reconciliation: scheduler/sweeps.py
    ("scheduler:xq:<queue>", "string", "-", "dead letters of <queue> seen up to (ms)"),
))


def _regex(pattern: str) -> re.Pattern[str]:
    parts = re.split(r"(<[^>]+>)", pattern)
    return re.compile("".join(".+" if p.startswith("<") else re.escape(p) for p in parts))


#: the most specific rows first (most fixed characters), so ``pace:a:slow`` is not ``pace:<acct>``
_MATCHERS = sorted(((_regex(d.pattern), d) for d in TABLE),
                   key=lambda m: -len(re.sub(r"<[^>]+>", "", m[1].pattern)))


class Keys:
    """The names of every key under one namespace (see the table above)."""

    def __init__(self, namespace: str) -> None:
        self.ns = namespace

    def key(self, *parts: str | int) -> str:
        return ":".join((self.ns, *map(str, parts)))

    def describe(self, key: str) -> KeyDoc | None:
        """The table row of ``key`` (None: a key this table does not name)."""
        if not key.startswith(self.ns + ":"):
            return None
        rest = key[len(self.ns) + 1:]
        for rx, doc in _MATCHERS:
            if rx.fullmatch(rest):
                return doc
        return None

    # --- message records
    # three keys of every message a producer accepts: ``key``'s text, written directly
    def msg(self, msg_id: str) -> str:
        return f"{self.ns}:msg:{msg_id}"

    def msg_history(self, msg_id: str) -> str:
        return f"{self.ns}:msg:{msg_id}:history"

    def events(self) -> str:
        return self.key("events")

    def nonfinal(self) -> str:
        return self.key("nonfinal")

    def stats(self) -> str:
        return self.key("stats")

    def idem(self, account: str, key: str) -> str:
        return self.key("idem", account, key)

    def seq(self, account: str) -> str:
        return self.key("seq", account)

    def pid(self, account: str, provider_id: str) -> str:
        return self.key("pid", account, provider_id)

    # --- payments
    def pay(self, pay_id: str) -> str:
        return self.key("pay", pay_id)

    def pay_history(self, pay_id: str) -> str:
        return self.key("pay", pay_id, "history")

    def pay_lock(self, pay_id: str) -> str:
        return self.key("pay", pay_id, "lock")

    def pay_due(self, account: str) -> str:
        return self.key("pay", "due", account)

    def mtscheck(self, check_id: str) -> str:
        return self.key("mtscheck", check_id)

    def mtscheck_history(self, check_id: str) -> str:
        return self.key("mtscheck", check_id, "history")

    def mtscheck_open(self) -> str:
        return self.key("mtscheck", "open")

    def payment_events(self) -> str:
        return self.key("payments", "events")

    # --- accounts
    def pause(self, account: str) -> str:
        return self.key("pause", account)

    def incident(self, account: str) -> str:
        return self.key("incident", account)

    def resumed(self, account: str) -> str:
        return self.key("resumed", account)

    def alert(self, account: str, kind: str) -> str:
        return self.key("alert", account, kind)

    def alerts(self, account: str) -> str:
        """A SCAN pattern for every alert of ``account``."""
        return self.key("alert", account, "*")

    def balance(self, account: str) -> str:
        return self.key("balance", account)

    def unreach(self, account: str) -> str:
        return self.key("unreach", account)

    def failovers(self) -> str:
        return self.key("failovers")

    def price(self, account: str) -> str:
        return self.key("price", account)

    def usage(self, account: str, day: str) -> str:
        return self.key("usage", account, day)

    # --- traffic rules
    def pace(self, account: str) -> str:
        return self.key("pace", account)

    def pace_slow(self, account: str) -> str:
        return self.key("pace", account, "slow")

    def pace_counts(self, account: str) -> str:
        return self.key("pace", account, "count")

    def flood(self, family: str, phone: str) -> str:
        return self.key("flood", family, phone)

    # --- SMPP
    def smpp_lease(self, login: str, slot: int) -> str:
        return self.key("smpp", "lease", login, slot)

    def smpp(self, kind: str, account: str, part: str) -> str:
        """``kind``: mid, gid, early, earlyphone, orphan, resend or idfmt (see the table)."""
        if kind not in _SMPP_KINDS:
            raise ValueError(f"no SMPP key kind {kind!r}")
        return self.key("smpp", kind, account, part)

    def smpp_incoming(self) -> str:
        return self.key("smpp", "incoming")

    # --- providers
    def oauth_token(self, provider: str, client_id: str) -> str:
        return self.key("oauth", provider, client_id)

    def oauth_lock(self, provider: str, client_id: str) -> str:
        return self.key("oauth", provider, client_id, "lock")

    # --- producers
    def dup(self, account: str, fingerprint: str) -> str:
        return f"{self.ns}:dup:{account}:{fingerprint}"

    def consent(self, digits: str) -> str:
        return self.key("consent", digits)

    def consent_history(self, digits: str) -> str:
        return self.key("consent", digits, "history")

    # --- HTTP API
    def token(self, digest: str) -> str:
        return self.key("token", digest)

    def tokens(self) -> str:
        return self.key("tokens")

    def tokens_revoked(self) -> str:
        """Pub/sub channel: the digest of each revoked token (API processes forget it)."""
        return self.key("tokens", "revoked")

    def producer(self, name: str) -> str:
        return self.key("producer", name)

    def producer_sms(self, name: str) -> str:
        return self.key("producer", name, "sms")

    def http_idem(self, producer: str, digest: str) -> str:
        return self.key("http-idem", producer, digest)

    def owner(self, kind: str, rec_id: str) -> str:
        return self.key("owner", kind, rec_id)

    def cb_queue(self, rec_id: str) -> str:
        return self.key("cb", "q", rec_id)

    def cb_due(self) -> str:
        return self.key("cb", "due")

    def cb_try(self, rec_id: str) -> str:
        return self.key("cb", "try", rec_id)

    def cb_lock(self, rec_id: str) -> str:
        return self.key("cb", "lock", rec_id)

    # --- Bitrix24
    def b24(self, producer: str) -> str:
        return self.key("b24", producer)

    def b24_lock(self, producer: str) -> str:
        return self.key("b24", "lock", producer)

    def b24_done(self, msg_id: str) -> str:
        return self.key("b24", "done", msg_id)

    # --- scheduler
    def leader(self) -> str:
        return self.key("scheduler", "leader")

    def fired(self, job: str, fire_ms: int) -> str:
        return self.key("scheduler", "fired", job, fire_ms)

    def last_fire(self, job: str) -> str:
        return self.key("scheduler", "last", job)

    def runs(self) -> str:
        return self.key("scheduler", "runs")

    def dead_letters_seen(self, queue: str) -> str:
        """Up to when (ms) the sweep has read ``queue``'s dead letters."""
        return self.key("scheduler", "xq", queue)

    # --- dramatiq's (written by dramatiq's Redis broker under its own namespace; read by
    # the metrics)
    def broker_namespace(self) -> str:
        return f"{self.ns}-q"

    def queue(self, queue: str) -> str:
        """The list of job ids waiting on ``queue``."""
        return f"{self.ns}-q:{queue}"

    def queue_messages(self, queue: str) -> str:
        """The hash of those jobs (id -> encoded message)."""
        return f"{self.ns}-q:{queue}.msgs"

    def delayed_messages(self, queue: str) -> str:
        """The hash of the jobs waiting for their time (retries, deferrals)."""
        return f"{self.ns}-q:{queue}.DQ.msgs"

    def queue_dead_letters(self, queue: str) -> str:
        """The zset of ``queue``'s dead-lettered jobs (id -> when, ms), kept 7 days."""
        return f"{self.ns}-q:{queue}.XQ"

    def queue_dead_letter_messages(self, queue: str) -> str:
        """The hash of those jobs (id -> encoded message)."""
        return f"{self.ns}-q:{queue}.XQ.msgs"


_SMPP_KINDS = frozenset({"mid", "gid", "early", "earlyphone", "orphan", "resend", "idfmt"})

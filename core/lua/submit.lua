-- Gonets: accept messages, each in one step: its idempotency key, duplicate claim, the record
-- with its first event, its send job on the dramatiq queue and the producer's index.  One call
-- takes one message (send_sms) or a chunk of them (send_many); they are handled one after the
-- other, in order, each whole before the next begins (a message later in the call finds the
-- claims of those before it), and a script runs whole or not at all: a producer that dies
-- midway leaves nothing half-done.
--
-- Keys (shared):
--   KEYS[1]  <ns>:events               stream: every status change
--   KEYS[2]  <ns>:nonfinal             zset: id -> next status check (ms)
--   KEYS[3]  <ns>:stats                hash: "<account>|<status>|<code>" -> count
-- then 7 per message, from k = 3 + 7 * (i - 1):
--   KEYS[k+1] <ns>:msg:<id>            hash: the record (must not exist)
--   KEYS[k+2] <ns>:msg:<id>:history    list: JSON status events
--   KEYS[k+3] <ns>-q:<queue>           list: dramatiq's queue (its redis message ids)
--   KEYS[k+4] <ns>-q:<queue>.msgs      hash: dramatiq's redis message id -> encoded message
--   KEYS[k+5] <ns>:idem:<acct>:<key>   string: idempotency key -> message id (ttl > 0)
--   KEYS[k+6] <ns>:dup:<acct>:<fp>     string: duplicate fingerprint -> first id (window > 0)
--   KEYS[k+7] <ns>:producer:<name>:sms zset: the producer's index (score ~= "")
-- Args (shared):
--   ARGV[1] stream maxlen  ARGV[2] status  ARGV[3] the doorbell channel (<ns>-q:wake,
--   core/doorbell.py)
-- then 11 per message, from a = 3 + 11 * (i - 1):
--   ARGV[a+1] id  ARGV[a+2] next check (ms)  ARGV[a+3] event JSON  ARGV[a+4] idempotency ttl
--   (s, 0: no key)  ARGV[a+5] duplicate window (ms, 0: no claim)  ARGV[a+6] dramatiq's redis
--   message id  ARGV[a+7] the encoded dramatiq message  ARGV[a+8] index score (ms, "": no
--   index)  ARGV[a+9] trim the index below this score ("": no)  ARGV[a+10] the queue's name
--   ARGV[a+11] the record: a JSON object of field -> text value
-- The enqueue is what dramatiq's own dispatch.lua "enqueue" command does (HSET the message,
-- RPUSH its id), so workers read it as any other dramatiq message; the PUBLISH wakes them, once
-- per queue and call (subscribers hear it when the script is over: one ring per queue wakes
-- them as many did).
-- Returns, per message in order, two items: "new", id | "idem", bound id | "dup", first id |
-- "exists", id.
local maxlen, status, doorbell = ARGV[1], ARGV[2], ARGV[3]
local n = (#ARGV - 3) / 11
local out = {}
local rung = {}

local function submit(k, a)
    local id = ARGV[a + 1]
    local idem_ttl = tonumber(ARGV[a + 4])
    local dup_ms = tonumber(ARGV[a + 5])
    if redis.call("exists", KEYS[k + 1]) == 1 then
        -- this very call ran before: redis-py sent it again after a reply lost with the
        -- connection (the record's first event is this call's own); the same answer as then
        if redis.call("lindex", KEYS[k + 2], 0) == ARGV[a + 3] then
            return "new", id
        end
        return "exists", id
    end
    if idem_ttl > 0 then
        local bound = redis.call("get", KEYS[k + 5])
        if bound then
            return "idem", bound
        end
    end
    if dup_ms > 0 then
        local first = redis.call("get", KEYS[k + 6])
        if first then
            -- the same content within the window: that message, not a new one
            if idem_ttl > 0 then
                redis.call("set", KEYS[k + 5], first, "EX", idem_ttl)
            end
            return "dup", first
        end
    end
    if dup_ms > 0 then
        redis.call("set", KEYS[k + 6], id, "PX", dup_ms)
    end
    if idem_ttl > 0 then
        redis.call("set", KEYS[k + 5], id, "EX", idem_ttl)
    end
    local record = cjson.decode(ARGV[a + 11])
    local flat = {}
    for field, value in pairs(record) do
        flat[#flat + 1] = field
        flat[#flat + 1] = value
    end
    local event = ARGV[a + 3]
    redis.call("hset", KEYS[k + 1], unpack(flat))
    redis.call("rpush", KEYS[k + 2], event)
    redis.call("xadd", KEYS[1], "MAXLEN", "~", maxlen, "*", "id", id, "status", status,
               "event", event)
    redis.call("zadd", KEYS[2], ARGV[a + 2], id)
    redis.call("hincrby", KEYS[3], (record["account"] or "-") .. "|" .. status .. "|", 1)
    redis.call("hset", KEYS[k + 4], ARGV[a + 6], ARGV[a + 7])
    redis.call("rpush", KEYS[k + 3], ARGV[a + 6])
    local queue = ARGV[a + 10]
    if not rung[queue] then
        rung[queue] = true
        redis.call("publish", doorbell, queue)
    end
    if ARGV[a + 8] ~= "" then
        redis.call("zadd", KEYS[k + 7], "NX", ARGV[a + 8], id)
        if ARGV[a + 9] ~= "" then
            redis.call("zremrangebyscore", KEYS[k + 7], "-inf", "(" .. ARGV[a + 9])
        end
    end
    return "new", id
end

for i = 1, n do
    local outcome, id = submit(3 + 7 * (i - 1), 3 + 11 * (i - 1))
    out[#out + 1] = outcome
    out[#out + 1] = id
end
return out

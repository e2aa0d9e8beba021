-- Gonets: accept one message in one step: idempotency key, duplicate claim, the record with its
-- first event, its send job on the dramatiq queue and the producer's index, atomically (a
-- producer that dies midway leaves nothing half-done: the script ran whole or not at all).
--
-- Keys:
--   KEYS[1]  <ns>:msg:<id>             hash: the record (must not exist)
--   KEYS[2]  <ns>:msg:<id>:history     list: JSON status events
--   KEYS[3]  <ns>:events               stream: every status change
--   KEYS[4]  <ns>:nonfinal             zset: id -> next status check (ms)
--   KEYS[5]  <ns>:stats                hash: "<account>|<status>|<code>" -> count
--   KEYS[6]  <ns>-q:<queue>            list: dramatiq's queue (its redis message ids)
--   KEYS[7]  <ns>-q:<queue>.msgs       hash: dramatiq's redis message id -> encoded message
--   KEYS[8]  <ns>:idem:<acct>:<key>    string: idempotency key -> message id (ARGV[6] > 0)
--   KEYS[9]  <ns>:dup:<acct>:<fp>      string: duplicate fingerprint -> first id (ARGV[7] > 0)
--   KEYS[10] <ns>:producer:<name>:sms  zset: the producer's index (ARGV[10] ~= "")
-- Args:
--   ARGV[1] id  ARGV[2] next check (ms)  ARGV[3] stream maxlen  ARGV[4] event JSON
--   ARGV[5] status  ARGV[6] idempotency ttl (s, 0: no key)  ARGV[7] duplicate window (ms,
--   0: no claim)  ARGV[8] dramatiq's redis message id  ARGV[9] the encoded dramatiq message
--   ARGV[10] index score (ms, "": no index)  ARGV[11] trim the index below this score ("": no)
--   ARGV[12] the doorbell channel (<ns>-q:wake, core/doorbell.py)  ARGV[13] the queue's name
--   ARGV[14] the record: a JSON object of field -> text value
-- The enqueue is what dramatiq's own dispatch.lua "enqueue" command does (HSET the message,
-- RPUSH its id), so workers read it as any other dramatiq message; the PUBLISH wakes them.
-- Returns {"new", id}, {"idem", bound id}, {"dup", first id} or {"exists", id}.
local id = ARGV[1]
local idem_ttl = tonumber(ARGV[6])
local dup_ms = tonumber(ARGV[7])

if idem_ttl > 0 then
    local bound = redis.call("get", KEYS[8])
    if bound then
        return {"idem", bound}
    end
end
if dup_ms > 0 then
    local first = redis.call("get", KEYS[9])
    if first then
        -- the same content within the window: that message, not a new one
        if idem_ttl > 0 then
            redis.call("set", KEYS[8], first, "EX", idem_ttl)
        end
        return {"dup", first}
    end
end
if redis.call("exists", KEYS[1]) == 1 then
    return {"exists", id}
end
if dup_ms > 0 then
    redis.call("set", KEYS[9], id, "PX", dup_ms)
end
if idem_ttl > 0 then
    redis.call("set", KEYS[8], id, "EX", idem_ttl)
end
local record = cjson.decode(ARGV[14])
local flat = {}
for field, value in pairs(record) do
    flat[#flat + 1] = field
    flat[#flat + 1] = value
end
redis.call("hset", KEYS[1], unpack(flat))
redis.call("rpush", KEYS[2], ARGV[4])
redis.call("xadd", KEYS[3], "MAXLEN", "~", ARGV[3], "*", "id", id, "status", ARGV[5], "event", ARGV[4])
redis.call("zadd", KEYS[4], ARGV[2], id)
local acct = record["account"] or "-"
redis.call("hincrby", KEYS[5], acct .. "|" .. ARGV[5] .. "|", 1)
redis.call("hset", KEYS[7], ARGV[8], ARGV[9])
redis.call("rpush", KEYS[6], ARGV[8])
redis.call("publish", ARGV[12], ARGV[13])
if ARGV[10] ~= "" then
    redis.call("zadd", KEYS[10], "NX", ARGV[10], id)
    if ARGV[11] ~= "" then
        redis.call("zremrangebyscore", KEYS[10], "-inf", "(" .. ARGV[11])
    end
end
return {"new", id}

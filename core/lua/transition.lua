-- Gonets: move one record (message, payment, check) to a new status, atomically.
-- The record's kind is a core.store.RecordModel: its prefix names the keys, its rank table
-- gives ARGV[2]; rank 2 (core.store.FINAL_RANK) is final for every kind.
--
-- Keys (messages shown; payments: <ns>:pay:<id>, <ns>:payments:events, <ns>:pay:due:<acct>):
--   KEYS[1]  <ns>:msg:<id>           hash: the record (status, status_rank, fields...)
--   KEYS[2]  <ns>:msg:<id>:history   list: JSON status events of this record, oldest first
--   KEYS[3]  <ns>:events             stream: every status change of every record of the kind
--   KEYS[4]  <ns>:nonfinal           zset: id -> next status check (ms) for non-final records
--   KEYS[5]  <ns>:stats              hash: "<account>|<status>|<error code>" -> changes
--                                    (optional; messages only, feeds the metrics)
-- Args:
--   ARGV[1] new status   ARGV[2] its rank (messages: 0 queued/deferred, 1 submitted, 2 final)
--   ARGV[3] "1" if final ARGV[4] now (ms)      ARGV[5] retention (s)
--   ARGV[6] stream maxlen ARGV[7] record id    ARGV[8] event JSON
--   ARGV[9..] field, value pairs to set along with the status
-- Returns: -1 no such record, 0 refused (final already, or lower rank), 1 changed,
--          2 same status (fields updated, no event).
if redis.call("exists", KEYS[1]) == 0 then
    return -1
end
local cur = redis.call("hget", KEYS[1], "status")
local cur_rank = tonumber(redis.call("hget", KEYS[1], "status_rank") or "0")
local new_rank = tonumber(ARGV[2])
if cur_rank >= 2 or new_rank < cur_rank then
    return 0
end
if #ARGV > 8 then
    redis.call("hset", KEYS[1], unpack(ARGV, 9))
end
if cur == ARGV[1] then
    return 2
end
redis.call("hset", KEYS[1], "status", ARGV[1], "status_rank", ARGV[2], "updated_ms", ARGV[4])
redis.call("rpush", KEYS[2], ARGV[8])
redis.call("xadd", KEYS[3], "MAXLEN", "~", ARGV[6], "*", "id", ARGV[7], "status", ARGV[1], "event", ARGV[8])
if KEYS[5] then
    local acct = redis.call("hget", KEYS[1], "account") or "-"
    local code = cjson.decode(ARGV[8])["error_code"]
    if type(code) ~= "string" then code = "" end
    redis.call("hincrby", KEYS[5], acct .. "|" .. ARGV[1] .. "|" .. code, 1)
end
if ARGV[3] == "1" then
    redis.call("expire", KEYS[1], ARGV[5])
    redis.call("expire", KEYS[2], ARGV[5])
    redis.call("zrem", KEYS[4], ARGV[7])
end
return 1

-- Gonets: move a message not yet sent to another account of its route (core/routing.py).
-- Refused unless the record is waiting on the account named (queued or deferred), with no
-- send in flight: a message that may have gone out (inflight_ms set) is never moved.
--
-- Keys:
--   KEYS[1]  <ns>:msg:<id>           hash: the record (account, provider, status, tried...)
--   KEYS[2]  <ns>:msg:<id>:history   list: JSON status events of this record, oldest first
-- Args:
--   ARGV[1] the account it is on   ARGV[2] the account it moves to   ARGV[3] that one's provider
--   ARGV[4] now (ms)   ARGV[5] the history event (JSON)   ARGV[6] the entry for ``tried`` (JSON)
--   ARGV[7] most moves allowed   ARGV[8] the new account's default sender ("" none): taken
--   when the caller asked for no sender name (``sender_default`` = "1")
-- Returns: 1 moved; 0 refused (gone, final, sent or in flight, not on that account, moved
-- too often).
if redis.call("exists", KEYS[1]) == 0 then
    return 0
end
local f = redis.call("hmget", KEYS[1], "status", "account", "inflight_ms", "moves", "tried",
                     "sender_default")
if f[1] ~= "queued" and f[1] ~= "deferred" then
    return 0
end
if f[2] ~= ARGV[1] then
    return 0
end
if f[3] and f[3] ~= "" then
    return 0
end
local moves = tonumber(f[4] or "0") or 0
if moves >= tonumber(ARGV[7]) then
    return 0
end
local tried = {}
if f[5] and f[5] ~= "" then
    tried = cjson.decode(f[5])
end
table.insert(tried, cjson.decode(ARGV[6]))
redis.call("hset", KEYS[1], "account", ARGV[2], "provider", ARGV[3], "moves", moves + 1,
           "tried", cjson.encode(tried), "status", "queued", "status_rank", "0",
           "updated_ms", ARGV[4], "waiting_reason", "")
-- the numeric id and the provider id belong to the account it leaves
redis.call("hdel", KEYS[1], "seq", "provider_id")
if f[6] == "1" then
    if ARGV[8] == "" then
        redis.call("hdel", KEYS[1], "sender")
    else
        redis.call("hset", KEYS[1], "sender", ARGV[8])
    end
end
redis.call("rpush", KEYS[2], ARGV[5])
return 1

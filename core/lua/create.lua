-- Gonets: create one record (message, payment, check) with its first event, atomically.
--
-- Keys (messages shown; other kinds use their core.store.RecordModel's keys):
--   KEYS[1]  <ns>:msg:<id>           hash: the record (must not exist)
--   KEYS[2]  <ns>:msg:<id>:history   list: JSON status events
--   KEYS[3]  <ns>:events             stream: every status change
--   KEYS[4]  <ns>:nonfinal           zset: id -> next status check (ms)
--   KEYS[5]  <ns>:stats              hash: "<account>|<status>|<code>" -> count (optional)
-- Args:
--   ARGV[1] id  ARGV[2] next check (ms)  ARGV[3] stream maxlen  ARGV[4] event JSON
--   ARGV[5] status  ARGV[6..] field, value pairs
-- Returns 1 when created, 0 when a record with this id exists already.
if redis.call("exists", KEYS[1]) == 1 then
    return 0
end
redis.call("hset", KEYS[1], unpack(ARGV, 6))
redis.call("rpush", KEYS[2], ARGV[4])
redis.call("xadd", KEYS[3], "MAXLEN", "~", ARGV[3], "*", "id", ARGV[1], "status", ARGV[5], "event", ARGV[4])
redis.call("zadd", KEYS[4], ARGV[2], ARGV[1])
if KEYS[5] then
    local acct = redis.call("hget", KEYS[1], "account") or "-"
    redis.call("hincrby", KEYS[5], acct .. "|" .. ARGV[5] .. "|", 1)
end
return 1

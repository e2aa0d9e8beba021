-- Gonets: send a submitted message again after a receipt with a retryable error (SMSC err 220
-- "queue overflowed at the operator", 251 "too many messages to one number"): the one
-- deliberate step back from `submitted`, bounded, and once per receipt.
--
-- Keys:
--   KEYS[1]  <ns>:msg:<id>           hash: the record
--   KEYS[2]  <ns>:msg:<id>:history   list: JSON status events
--   KEYS[3]  <ns>:events             stream: every status change
--   KEYS[4]  <ns>:nonfinal           zset: id -> next status check (ms)
-- Args:
--   ARGV[1] now (ms)  ARGV[2] stream maxlen  ARGV[3] id  ARGV[4] event JSON
--   ARGV[5] the receipt's provider message id  ARGV[6] most resubmissions allowed
--   ARGV[7] new status ("queued" or "deferred")  ARGV[8] next check (ms)
--   ARGV[9..] field, value pairs to set
-- Returns 1 resubmitted, 2 this receipt was handled already (nothing to do), 0 not possible
-- (the record is not `submitted` for this provider id, or the allowance is used up).
if redis.call("exists", KEYS[1]) == 0 then
    return 0
end
if redis.call("hget", KEYS[1], "resubmitted_for") == ARGV[5] then
    return 2
end
if redis.call("hget", KEYS[1], "status") ~= "submitted" then
    return 0
end
local done = tonumber(redis.call("hget", KEYS[1], "resubmits") or "0")
if done >= tonumber(ARGV[6]) then
    return 0
end
redis.call("hset", KEYS[1], "resubmits", done + 1, "resubmitted_for", ARGV[5],
           "status", ARGV[7], "status_rank", "0", "updated_ms", ARGV[1], "inflight_ms", "",
           "seq", "", "provider_id", "", "poll_token", "")
if #ARGV > 8 then
    redis.call("hset", KEYS[1], unpack(ARGV, 9))
end
redis.call("rpush", KEYS[2], ARGV[4])
redis.call("xadd", KEYS[3], "MAXLEN", "~", ARGV[2], "*", "id", ARGV[3], "status", ARGV[7], "event", ARGV[4])
redis.call("zadd", KEYS[4], ARGV[8], ARGV[3])
return 1

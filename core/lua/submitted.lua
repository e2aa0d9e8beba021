-- Gonets: a send the provider took, in one step (``Store.mark_submitted``, called by
-- ``Outcomes.submitted``): what were five round trips, in their order and with their effects:
--   1. the provider's id is bound to the message (``Store.bind_provider_id``);
--   2. the record moves to ``submitted`` (transition.lua itself, run whole: ``transition``
--      below is that file); if the record is gone (-1) nothing else is written;
--   3. the day's usage of its kind is counted (``core.usage.count``);
--   4. its status poll chain's token and due time are set (``Store.set_poll``);
--   5. the poll job is put on its dramatiq delay queue (what dispatch.lua "enqueue" does for
--      ``RedisBroker.enqueue(message, delay=...)``), ringing the doorbell when asked;
--   6. when given, the send job that did all this is acked as dispatch.lua "ack" does (the
--      worker then skips its own ack: ``core.broker.JobAck``).
--
-- Keys:
--   KEYS[1..n]  transition.lua's keys (n = ARGV[1])
--   KEYS[n+1]   <ns>:pid:<acct>:<provider id>   string: -> message id
--   KEYS[n+2]   <ns>:usage:<acct>:<day>         hash: "<kind>:messages", "<kind>:parts"
--   KEYS[n+3]   <ns>-q:<queue>.DQ               list: the delay queue's redis message ids
--   KEYS[n+4]   <ns>-q:<queue>.DQ.msgs          hash: redis message id -> encoded message
--   KEYS[n+5]   <ns>-q:__acks__.<worker>.<queue>  set: the send job's ack set (optional)
--   KEYS[n+6]   <ns>-q:<queue>.msgs             hash: the send job's body (optional)
-- Args:
--   ARGV[1] n   ARGV[2] m: how many arguments transition.lua takes (ARGV[3..m+2]); then
--   message id, provider id ttl (s), usage kind, parts, usage ttl (s), poll token,
--   poll due (ms), the job's redis message id, the encoded job, the doorbell channel ("": do
--   not ring), the queue's name to ring, and the send job's redis message id (with
--   KEYS[n+5..n+6]).
-- Returns transition.lua's answer (a call run again: 2 if the record is submitted, else 0).
local n = tonumber(ARGV[1])
local m = tonumber(ARGV[2])
local tkeys, targs = {}, {}
for i = 1, n do tkeys[i] = KEYS[i] end
for i = 1, m do targs[i] = ARGV[2 + i] end
local a = 2 + m
local id = ARGV[a + 1]

local function ack()
    if KEYS[n + 5] then
        if redis.call("srem", KEYS[n + 5], ARGV[a + 12]) > 0 then
            redis.call("hdel", KEYS[n + 6], ARGV[a + 12])
        end
    end
end

-- this very call ran before: redis-py sent it again after a reply lost with the connection
-- (the record holds this call's own poll token): nothing is counted or queued twice
if redis.call("hget", KEYS[1], "poll_token") == ARGV[a + 6] then
    ack()
    return redis.call("hget", KEYS[1], "status") == "submitted" and 2 or 0
end

redis.call("set", KEYS[n + 1], id, "EX", ARGV[a + 2])
local res = transition(tkeys, targs)
if res == -1 then
    return res
end
local kind = ARGV[a + 3]
redis.call("hincrby", KEYS[n + 2], kind .. ":messages", 1)
redis.call("hincrby", KEYS[n + 2], kind .. ":parts", ARGV[a + 4])
redis.call("expire", KEYS[n + 2], ARGV[a + 5])
redis.call("hset", KEYS[1], "poll_token", ARGV[a + 6])
redis.call("zadd", tkeys[4], "XX", ARGV[a + 7], id)
redis.call("hset", KEYS[n + 4], ARGV[a + 8], ARGV[a + 9])
redis.call("rpush", KEYS[n + 3], ARGV[a + 8])
if ARGV[a + 10] ~= "" then
    redis.call("publish", ARGV[a + 10], ARGV[a + 11])
end
ack()
return res

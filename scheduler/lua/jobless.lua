-- Gonets scheduler: of these messages, found with no send job in their account's queues
-- (scheduler/sweeps.py looked), which are still queued or deferred? Counts the reconciliation
-- on each one returned, in the same step.
--
-- Records are read at <ns>:msg:<id> (ARGV[1] is the prefix "<ns>:msg:"; one Redis, as
-- sweep.lua).
-- Args:
--   ARGV[1] record key prefix   ARGV[2] now (ms)   ARGV[3] "mark": count the reconciliation
--   on each record returned (reconciled += 1, reconciled_ms = now), or "look" (write nothing)
--   ARGV[4..] message ids
-- Returns { id, lane, inflight_ms, ... } for each id whose record is still queued or deferred
-- (status_rank 0), in the order given, once each ("" where a field is empty).
local prefix, now, mark = ARGV[1], ARGV[2], ARGV[3] == "mark"
local out, seen = {}, {}
for i = 4, #ARGV do
    local id = ARGV[i]
    if not seen[id] then
        seen[id] = true
        local f = redis.call("hmget", prefix .. id, "status_rank", "lane", "inflight_ms")
        if f[1] == "0" then
            if mark then
                redis.call("hincrby", prefix .. id, "reconciled", 1)
                redis.call("hset", prefix .. id, "reconciled_ms", now)
            end
            out[#out + 1] = id
            out[#out + 1] = f[2] or ""
            out[#out + 1] = f[3] or ""
        end
    end
end
return out

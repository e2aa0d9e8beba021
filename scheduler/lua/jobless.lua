-- Gonets scheduler: which of these queued/deferred messages have no send job left?
--
-- Keys: the hashes that hold every send job of one account, as dramatiq's Redis broker keeps
-- them (dramatiq/brokers/redis/dispatch.lua; <bns> is core.keys Keys.broker_namespace()):
--   KEYS[i]  <bns>:sms.<account>.<lane>.msgs      hash: job id -> encoded job (waiting,
--                                                 fetched by a worker, or being processed)
--   KEYS[j]  <bns>:sms.<account>.<lane>.DQ.msgs   hash: the same for delayed jobs (retries,
--                                                 deferrals, pauses: until their eta)
-- A job stays in one of these hashes from its enqueue until it is acked, and a retry or a
-- delayed job's move to its queue writes the new job before the old one is acked, so at any
-- instant a live send job of a message is in one of them.  This script runs as one step:
-- what it does not find there is gone (a producer killed between record and enqueue, a job
-- dead-lettered, Redis lost the queue but not the record).
-- Records are read at <ns>:msg:<id> (ARGV[1] is the prefix "<ns>:msg:"; one Redis, as sweep.lua).
-- Args:
--   ARGV[1] record key prefix   ARGV[2] now (ms)   ARGV[3] "mark": count the reconciliation
--   on each record returned (fields reconciled += 1, reconciled_ms = now), or "look" (write
--   nothing)   ARGV[4..] message ids
-- A job's encoding is dramatiq's JSON ({"queue_name":..,"actor_name":..,"args":["<id>"],..});
-- the send actors take the message id as their only argument.
-- Returns { id, lane, inflight_ms, ... } for each id still queued or deferred (status_rank 0)
-- with no send job, in the order given ("" where a field is empty).
local prefix, now, mark = ARGV[1], ARGV[2], ARGV[3] == "mark"
local wanted, n = {}, 0
for i = 4, #ARGV do
    local rank = redis.call("hget", prefix .. ARGV[i], "status_rank")
    if rank == "0" then
        wanted[ARGV[i]] = true
        n = n + 1
    end
end
for _, key in ipairs(KEYS) do
    if n == 0 then break end
    local cursor = "0"
    repeat
        local page = redis.call("hscan", key, cursor, "COUNT", 1000)
        cursor = page[1]
        local items = page[2]
        for j = 2, #items, 2 do
            local id = string.match(items[j], '"args":%["([^"]+)"')
            if id and wanted[id] then
                wanted[id] = nil
                n = n - 1
            end
        end
    until cursor == "0" or n == 0
end
local out = {}
for i = 4, #ARGV do
    local id = ARGV[i]
    if wanted[id] then
        wanted[id] = nil  -- an id given twice is returned once
        local f = redis.call("hmget", prefix .. id, "lane", "inflight_ms")
        if mark then
            redis.call("hincrby", prefix .. id, "reconciled", 1)
            redis.call("hset", prefix .. id, "reconciled_ms", now)
        end
        out[#out + 1] = id
        out[#out + 1] = f[1] or ""
        out[#out + 1] = f[2] or ""
    end
end
return out

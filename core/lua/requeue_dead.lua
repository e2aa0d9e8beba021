-- Gonets: put the jobs of dead workers back at the HEAD of their queues (core/broker.py
-- ``maintain``), before dramatiq's own maintenance (dispatch.lua), which would RPUSH them
-- behind every job queued since.  A job a worker held when it died may have been started (an
-- SMPP submit on the wire, its answer lost with the worker); its retry must come while the
-- provider's duplicate rule still makes a resend safe (SMSC: one identical request a minute).
--
-- dramatiq's keys (<bns> is the broker namespace, Keys.broker_namespace()):
--   <bns>:__heartbeats__                      zset: worker id -> last heartbeat (ms)
--   <bns>:__acks__.<worker id>.<queue>        set: jobs that worker fetched, not acked
--   <bns>:<queue>                             list: job ids waiting (fetched with LPOP)
--   <bns>:<queue>.msgs                        hash: job id -> encoded job
-- ARGV[1] <bns>   ARGV[2] heartbeats older than this (ms) are dead   ARGV[3..] queue names
-- (the ack sets emptied here are deleted; dramatiq's pass then finds nothing of these jobs,
-- and still drops the dead worker's heartbeat and its delay-queue jobs as it always does).
-- Returns how many jobs went back.
local bns = ARGV[1]
local dead = redis.call("zrangebyscore", bns .. ":__heartbeats__", 0, ARGV[2])
local back = 0
for _, worker in ipairs(dead) do
    for i = 3, #ARGV do
        local queue = bns .. ":" .. ARGV[i]
        local acks = bns .. ":__acks__." .. worker .. "." .. ARGV[i]
        for _, id in ipairs(redis.call("smembers", acks)) do
            if redis.call("hexists", queue .. ".msgs", id) == 1 then
                redis.call("lpush", queue, id)
                back = back + 1
            end
        end
        redis.call("del", acks)
    end
end
return back

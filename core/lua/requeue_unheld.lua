-- Gonets: put back the jobs in this worker's ack set of a queue that none of its threads
-- holds (core/broker.py, _Consumer.requeue_unheld).
--
-- A fetch (dramatiq's dispatch.lua "fetch") moves job ids from the queue into the worker's
-- ack set and answers them. When that answer is lost with the connection (Redis stopping, a
-- network cut), redis-py may run the fetch again on a new connection or raise: either way
-- the first batch sits in the ack set of a live worker, which no maintenance pass takes back
-- while the worker heartbeats. Nothing would ever run those jobs.
--   KEYS[1]  <bns>:__acks__.<worker id>.<queue>   set: jobs this worker fetched, not acked
--   KEYS[2]  <bns>:<queue>                        list: job ids waiting
--   KEYS[3]  <bns>:<queue>.msgs                   hash: job id -> encoded job
--   ARGV     the ids of every job the worker holds (handed to its threads or fetched and
--            not handed on yet): those stay.
-- Every other id leaves the ack set; one whose body is there goes back on the queue (as
-- dramatiq's own "requeue" does), one without a body is only dropped (nothing to run).
-- Returns { back on the queue, dropped without a body }.
local held = {}
for i = 1, #ARGV do
    held[ARGV[i]] = true
end
local back, gone = 0, 0
for _, id in ipairs(redis.call("smembers", KEYS[1])) do
    if not held[id] then
        redis.call("srem", KEYS[1], id)
        if redis.call("hexists", KEYS[3], id) == 1 then
            redis.call("rpush", KEYS[2], id)
            back = back + 1
        else
            gone = gone + 1
        end
    end
end
return { back, gone }

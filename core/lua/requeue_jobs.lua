-- Gonets: put jobs a worker holds back on their dramatiq queue, un-acked (core/broker.py).
--
-- dramatiq's Redis broker (dramatiq/brokers/redis/dispatch.lua) keeps, per queue:
--   KEYS[1]  <bns>:__acks__.<worker id>.<queue>   set: jobs this worker fetched, not acked
--   KEYS[2]  <bns>:<queue>                        list: job ids waiting
--   KEYS[3]  <bns>:<queue>.msgs                   hash: job id -> encoded job
-- (<bns> is the broker namespace, Keys.broker_namespace()).
-- Args: ARGV = id1, data1, id2, data2, ...: each job's redis_message_id and its encoding.
-- For each job:
--   * still ours (in the ack set): back on the queue, as dramatiq's own "requeue" does;
--     if Redis lost its body (a restart that lost the AOF's last second) it is written again
--     from the worker's copy;
--   * not ours and its body is on the queue: another worker's maintenance pass took it back
--     (our heartbeat lapsed during the outage): nothing to do, it is not doubled;
--   * neither (a restart without persistence lost it): written again from the worker's copy.
--     The jobs of Gonets are idempotent by record id, so a job that had in fact been done
--     by another worker in between only finds its record past that point.
-- Returns { back on the queue, written again }.
local back, restored = 0, 0
for i = 1, #ARGV, 2 do
    local id, data = ARGV[i], ARGV[i + 1]
    local ours = redis.call("srem", KEYS[1], id) == 1
    local present = redis.call("hexists", KEYS[3], id) == 1
    if ours or not present then
        if not present then
            redis.call("hset", KEYS[3], id, data)
            restored = restored + 1
        end
        redis.call("rpush", KEYS[2], id)
        back = back + 1
    end
end
return { back, restored }

-- Gonets scheduler: take or keep the leader lock.
--
-- Keys:
--   KEYS[1]  <ns>:scheduler:leader   string: the holder's instance id, expires after ARGV[2] ms
-- Args:
--   ARGV[1] this instance's id   ARGV[2] lock ttl (ms)
-- Returns: 1 this instance holds the lock (taken now or renewed), 0 another instance holds it.
local cur = redis.call("get", KEYS[1])
if cur == false then
    redis.call("set", KEYS[1], ARGV[1], "PX", ARGV[2])
    return 1
end
if cur == ARGV[1] then
    redis.call("pexpire", KEYS[1], ARGV[2])
    return 1
end
return 0

-- Gonets scheduler: give up the leader lock, only if this instance holds it.
--
-- Keys:   KEYS[1]  <ns>:scheduler:leader
-- Args:   ARGV[1]  this instance's id
-- Returns: 1 released, 0 not the holder (nothing changed).
if redis.call("get", KEYS[1]) == ARGV[1] then
    return redis.call("del", KEYS[1])
end
return 0

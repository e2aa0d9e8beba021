-- Gonets locks: extend a lock or lease only if this holder still owns it.
--
-- Keys:
--   KEYS[1]  a lock or lease key of core/locks.py (string: the holder's token)
-- Args:
--   ARGV[1]  the holder's token   ARGV[2]  the new ttl (ms)
-- Returns: 1 extended, 0 not the holder (taken over, or expired): nothing changed.
if redis.call("get", KEYS[1]) == ARGV[1] then
    return redis.call("pexpire", KEYS[1], ARGV[2])
end
return 0

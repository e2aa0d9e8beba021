-- Gonets locks: take or keep one of n lease slots (n = 1 for a plain lease).
--
-- Keys:
--   KEYS[1..n]  the slots, strings holding their holder's token, expiring after ARGV[2] ms:
--               <ns>:smpp:lease:<login>:<1..n> (SMPP binds), <ns>:scheduler:leader (n = 1)
-- Args:
--   ARGV[1]  this holder's token   ARGV[2]  lease ttl (ms)
-- Returns: i > 0 this holder holds KEYS[i] (kept and extended, or taken now: a slot it holds
--          already comes first, so a holder never takes two); 0 every slot is someone else's.
for i, key in ipairs(KEYS) do
    if redis.call("get", key) == ARGV[1] then
        redis.call("pexpire", key, ARGV[2])
        return i
    end
end
for i, key in ipairs(KEYS) do
    if redis.call("set", key, ARGV[1], "NX", "PX", ARGV[2]) then
        return i
    end
end
return 0

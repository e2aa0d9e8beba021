-- Gonets locks: delete a lock or lease key only if this holder still owns it.
--
-- Keys:
--   KEYS[1]  any lock or lease key of core/locks.py (string: the holder's token), e.g.
--            <ns>:cb:lock:<id>, <ns>:pay:<id>:lock, <ns>:dup:<acct>:<fp>, <ns>:idem:<acct>:<key>,
--            <ns>:smpp:lease:<login>:<slot>, <ns>:scheduler:leader, <ns>:oauth:<p>:<client>[:lock]
-- Args:
--   ARGV[1]  the holder's token (the value it wrote)
-- Returns: 1 deleted, 0 not the holder (someone else's value, or gone): nothing changed.
if redis.call("get", KEYS[1]) == ARGV[1] then
    return redis.call("del", KEYS[1])
end
return 0

-- Gonets: a send attempt begins (``Store.begin_attempt``): the message is in flight until its
-- outcome is settled (a retry looks it up at the provider before sending it again).  A first
-- attempt also takes the account's next provider-side number (``Store.next_seq``) in the
-- same step.
--
-- Keys:
--   KEYS[1]  <ns>:msg:<id>     hash: the record
--   KEYS[2]  <ns>:seq:<acct>   string: the account's counter (given only when the message
--                              has no number yet: the next one, 1..2^31-1, is stored as seq)
-- Args:
--   ARGV[1] now (ms)   ARGV[2] a seq to store ("": none, or the one taken from KEYS[2])
-- Returns the seq stored by this call ("" when none).
local seq = ARGV[2]
if KEYS[2] then
    local n = redis.call("incr", KEYS[2])
    -- SMSC accepts client ids 1..2^31-1 (Store.next_seq's formula)
    seq = string.format("%d", (n - 1) % 2147483647 + 1)
end
if seq ~= "" then
    redis.call("hset", KEYS[1], "seq", seq)
end
redis.call("hset", KEYS[1], "inflight_ms", ARGV[1])
redis.call("hincrby", KEYS[1], "attempts", 1)
return seq

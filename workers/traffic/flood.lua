-- Gonets: the flood rule for one subscriber of one provider: at most `max` messages while the
-- gaps between them stay under `gap`; a gap of `gap` or more starts a new burst.
--
-- Keys:
--   KEYS[1]  <ns>:flood:<provider family>:<phone>   hash: n (messages in the current burst),
--            last_ms (when the last one was let through, Redis clock); expires after a gap
-- Args:
--   ARGV[1] max messages per burst   ARGV[2] gap (ms)
--   ARGV[3] in how many ms the message reaches the provider (its pacing slot; the gaps the
--           provider sees are between those instants)
-- Returns {1, n} let through (the n-th of its burst), or {0, wait_ms} held: the burst ends
-- (and this message may go) wait_ms from now.
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[3] or "0")
local max = tonumber(ARGV[1])
local gap = tonumber(ARGV[2])
local cur = redis.call("HMGET", KEYS[1], "n", "last_ms")
local n = tonumber(cur[1] or "0")
local last = tonumber(cur[2] or "0")
if now - last >= gap then
    n = 0
end
if n >= max then
    return {0, last + gap - now + tonumber(ARGV[3] or "0")}
end
n = n + 1
if now > last then
    last = now
end
redis.call("HSET", KEYS[1], "n", n, "last_ms", last)
redis.call("PEXPIRE", KEYS[1], last - now + tonumber(ARGV[3] or "0") + gap + 1000)
return {1, n}

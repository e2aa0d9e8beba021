-- Gonets: cluster-wide pacing of one provider account (GCRA reservation) and its shared
-- slow-down state, timed by Redis TIME so every pod and process shares one clock.
--
-- Keys:
--   KEYS[1]  <ns>:pace:<account>        string: TAT, the theoretical arrival time (µs since the
--                                        epoch, Redis clock) of the next free slot
--   KEYS[3]  <ns>:pace:<account>:count  hash: booked (parts whose slot was reserved),
--                                        forfeited (parts whose slot a late writer gave up;
--                                        HINCRBY by the writer, not here); no TTL (counters)
--   KEYS[2]  <ns>:pace:<account>:slow   hash: factor (1e-6 units, 0 < factor <= 1e6) the rate was
--                                        cut to, at_us (when), ceil (the factor the provider
--                                        complained at), set when the provider said "slow
--                                        down"; absent while the full rate applies
-- Args (every call):
--   ARGV[1] op: "reserve" | "slow" | "peek"
--   ARGV[2] hold_us        after a cut the factor stays put this long ...
--   ARGV[3] recover_ppm_s  ... then climbs back this much (1e-6 units) per second of quiet,
--                          ten times slower above 90 % of the factor the provider complained
--                          at (so it settles under the provider's limit and probes it rarely)
-- reserve: ARGV[4] interval_us (one part at the full rate)  ARGV[5] cost (parts)
--          ARGV[6] horizon_us: refuse when the next slot is further ahead than this (-1: never
--          refuse; the urgent lane, whose slot therefore comes before any waiting bulk's)
--          returns {1, wait_us, factor, now_us} granted: send wait_us from now
--                  {0, wait_us, factor, now_us} refused: ask again in wait_us
-- slow:    ARGV[4] cut (1e-6 units, e.g. 700000 = to 70 %)  ARGV[5] min factor (1e-6 units)
--          ARGV[6] cooldown_us: cuts closer together than this count as one
--          returns {1 if cut now else 0, 0, factor}
-- peek:    returns {0, 0, factor}
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local op = ARGV[1]
local hold = tonumber(ARGV[2])
local recover = tonumber(ARGV[3])

-- the current factor: the last cut, climbing back linearly after the hold
local factor = 1000000
local cut_at = nil
local slow = redis.call("HMGET", KEYS[2], "factor", "at_us", "ceil")
if slow[1] then
    cut_at = tonumber(slow[2])
    local quiet_s = (now - cut_at - hold) / 1000000
    if quiet_s < 0 then quiet_s = 0 end
    factor = tonumber(slow[1]) + quiet_s * recover
    local knee = tonumber(slow[3] or "1000000") * 0.9
    if factor > knee then
        factor = math.max(knee, tonumber(slow[1])) + (factor - math.max(knee, tonumber(slow[1]))) / 10
    end
    factor = math.min(1000000, factor)
end

if op == "reserve" then
    local interval = tonumber(ARGV[4]) * 1000000 / factor
    local cost = tonumber(ARGV[5])
    local horizon = tonumber(ARGV[6])
    local tat = tonumber(redis.call("GET", KEYS[1]) or "0")
    if tat < now then
        tat = now  -- an unused slot in the past is gone: no bursts to catch up
    end
    if horizon >= 0 and tat - now > horizon then
        return {0, math.floor(tat - horizon - now), math.floor(factor), string.format("%.0f", now)}
    end
    -- all `cost` parts of a message reach the provider at once, so it needs room on both
    -- sides: it goes cost-1 slots after the TAT and the next send waits `cost` slots after it
    -- (consecutive sends of a and b parts are (a + b - 1) slots apart; then no window of
    -- `rate` slots ever holds more than `rate` parts)
    local send = tat + interval * (cost - 1)
    local new_tat = send + interval * cost
    redis.call("SET", KEYS[1], string.format("%.0f", new_tat),
               "PX", math.floor((new_tat - now) / 1000) + 60000)
    redis.call("HINCRBY", KEYS[3], "booked", cost)
    return {1, math.floor(send - now), math.floor(factor), string.format("%.0f", now)}
elseif op == "slow" then
    local cut = tonumber(ARGV[4])
    local min_factor = tonumber(ARGV[5])
    local cooldown = tonumber(ARGV[6])
    if cut_at and now - cut_at < cooldown then
        return {0, 0, math.floor(factor)}
    end
    local ceil = math.floor(factor)
    factor = math.max(min_factor, math.floor(factor * cut / 1000000))
    redis.call("HSET", KEYS[2], "factor", factor, "at_us", string.format("%.0f", now),
               "ceil", ceil)
    -- gone once fully recovered (plus a minute)
    local recover_s = 10 * (1000000 - factor) / math.max(recover, 1)
    redis.call("PEXPIRE", KEYS[2], math.floor(hold / 1000 + recover_s * 1000) + 60000)
    return {1, 0, math.floor(factor)}
end
return {0, 0, math.floor(factor)}

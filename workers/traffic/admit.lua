-- Gonets: begin a send's attempt, book its pacing slot and count it under the flood rule at
-- that slot's instant, in one step (``Pacer.ticket`` with a ``FloodCount`` and an
-- ``Attempt``, from ``Traffic.admit``).  ``attempt`` below is core/lua/attempt.lua, ``pace``
-- pacing.lua and ``flood`` flood.lua, each run whole, in the order the worker called them one
-- round trip each: the attempt (when its keys are given: the first booking of a send), then
-- pacing.lua's "reserve", then, only when the slot is granted no more than ARGV[7] µs from
-- now (the caller's deadline), flood.lua with the slot's wait as the message's arrival.  A
-- message the flood rule holds leaves its slot unused, as before (and the caller undoes the
-- attempt: ``Outcomes.not_sent``).
--
-- Keys:   KEYS[1..3] pacing.lua's   KEYS[4] flood.lua's   KEYS[5..6] attempt.lua's (optional)
-- Args:   ARGV[1..6] pacing.lua's "reserve" arguments   ARGV[7] the longest wait (µs) the
--         caller takes   ARGV[8..9] flood.lua's ARGV[1..2]   ARGV[10..11] attempt.lua's
-- Returns pacing.lua's answer {ok, wait_us, factor, now_us}; flood.lua's {ok, n | wait_ms} as
-- elements 5 and 6 ("" when it was not asked); attempt.lua's answer as element 7 (when run).
local seq = nil
if KEYS[5] then
    seq = attempt({KEYS[5], KEYS[6]}, {ARGV[10], ARGV[11]})
end
local p = pace({KEYS[1], KEYS[2], KEYS[3]}, {ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]})
p[5] = ""
p[6] = ""
if p[1] == 1 and p[2] <= tonumber(ARGV[7]) then
    local f = flood({KEYS[4]}, {ARGV[8], ARGV[9], string.format("%d", math.floor(p[2] / 1000))})
    p[5] = f[1]
    p[6] = f[2]
end
if seq then
    p[7] = seq
end
return p

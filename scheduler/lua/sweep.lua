-- Gonets scheduler: one batch of the status sweep, done where the data is.
--
-- Keys:
--   KEYS[1]  <ns>:nonfinal   zset: id -> next status check (ms), non-final records only
-- Records are read at <ns>:msg:<id> (ARGV[2] is the prefix "<ns>:msg:"), so this script
-- needs a single Redis (not a cluster), like the rest of the store.
-- Args:
--   ARGV[1] now (ms)   ARGV[2] record key prefix   ARGV[3] batch size
--   ARGV[4] give up after (ms, age since submit)   ARGV[5] min recheck (ms)
--   ARGV[6] max recheck (ms)   ARGV[7] reconcile after (ms)
--   ARGV[8..] names of the accounts this scheduler serves
-- Takes up to ARGV[3] ids due at ARGV[1] (ZRANGEBYSCORE ... LIMIT 0 n) and moves every one of
-- them out of the due range: a record that is gone or final is removed from the index; a
-- submitted one older than ARGV[4] is removed and returned to be closed as unknown; every
-- other one gets its next check at now + clamp(age, min, max) (backing off as it ages: the
-- formula of core/timing.py CheckPlan.next_delay_s; min and max are scheduler/sweeps.py's
-- SWEEP_PLAN). A submitted one is returned to be polled. A queued or deferred one that has
-- not changed for ARGV[7] is returned as "stale": its send job may be gone (sweeps.py asks
-- lua/jobless.lua, which looks at the queues themselves); it is looked at again after
-- clamp(age, ARGV[7], max).
-- Returns: { checked, removed, skipped, "close ids", npolls, account1, "ids", ...,
--            account, "stale ids", ... }
-- where the first npolls account/"ids" pairs are the submitted messages to poll now and the
-- rest the stale ones; each "ids" is a comma-joined string (one reply element instead of
-- thousands: parsing them one by one was most of the sweep's client time).
local now = tonumber(ARGV[1])
local prefix = ARGV[2]
local give_up = tonumber(ARGV[4])
local min_s, max_s = tonumber(ARGV[5]), tonumber(ARGV[6])
local stale_after = tonumber(ARGV[7])
local known = {}
for i = 8, #ARGV do known[ARGV[i]] = true end

local ids = redis.call("zrangebyscore", KEYS[1], "-inf", now, "LIMIT", 0, tonumber(ARGV[3]))
local removed, skipped = 0, 0
local close, polls, order = {}, {}, {}
local stale, stale_order = {}, {}

-- add id to lists[account], noting the account in order the first time
local function push(lists, seen, account, id)
    local list = lists[account]
    if not list then
        list = {}
        lists[account] = list
        seen[#seen + 1] = account
    end
    list[#list + 1] = id
end
local later = {}
local gone = {}
for _, id in ipairs(ids) do
    -- status_rank: 0 queued or deferred, 1 submitted, 2 final (core/contracts.py RANK)
    local f = redis.call("hmget", prefix .. id, "account", "status_rank", "submitted_ms",
                         "created_ms", "updated_ms")
    local account, rank = f[1], tonumber(f[2] or "2")
    if not f[2] or rank >= 2 then
        gone[#gone + 1] = id
    elseif not known[account] then
        later[#later + 1] = now + max_s
        later[#later + 1] = id
        skipped = skipped + 1
    else
        local age = now - tonumber(f[3] or f[4] or now)
        if rank == 1 and age > give_up then
            gone[#gone + 1] = id
            close[#close + 1] = id
        else
            local wait = age
            local floor = min_s
            if rank == 0 then floor = stale_after end
            if wait < floor then wait = floor end
            if wait > max_s then wait = max_s end
            later[#later + 1] = now + wait
            later[#later + 1] = id
            if rank == 1 then
                push(polls, order, account, id)
            elseif now - tonumber(f[5] or f[4] or now) >= stale_after then
                -- queued or deferred, unchanged for long: is its send job still there?
                push(stale, stale_order, account, id)
            else
                skipped = skipped + 1  -- queued or deferred lately: its send job owns it
            end
        end
    end
end
-- in chunks: unpack() has a limit on the number of arguments
for i = 1, #later, 2000 do
    redis.call("zadd", KEYS[1], "XX", unpack(later, i, math.min(i + 1999, #later)))
end
for i = 1, #gone, 1000 do
    redis.call("zrem", KEYS[1], unpack(gone, i, math.min(i + 999, #gone)))
end
removed = #gone - #close
local out = { #ids, removed, skipped, table.concat(close, ","), #order }
for _, account in ipairs(order) do
    out[#out + 1] = account
    out[#out + 1] = table.concat(polls[account], ",")
end
for _, account in ipairs(stale_order) do
    out[#out + 1] = account
    out[#out + 1] = table.concat(stale[account], ",")
end
return out

"""The rate limiter's Lua scripts. `gateway/ratelimit/memory.py` implements the same algorithm in Python.

Sliding windows are hashes of bucket index -> count (bucket = Redis `TIME` in ms // width), plus
their sum ('n') and oldest bucket ('o'), so a check reads two fields rather than every bucket. A
request is admitted when the buckets overlapping the last window plus its cost stay within the
limit; the extra partial bucket makes the count conservative, so no window ever admits more than
the limit. Concurrency slots are sorted sets of request id -> lease expiry (ms).

Redis time is used so replicas with skewed clocks agree.
"""

from __future__ import annotations

from gateway.redis.piggyback import LOOKUP_LUA
from gateway.redis.script import Script

# KEYS[i]: one per rule. ARGV[1]: the request id (member of concurrency sets).
# Then 2 values per rule: its spec "<kind> <limit> <span_ms> <width_ms>" (kind 'w' window | 'c'
# concurrent; span = window or lease; width = bucket width, 0 for 'c'), fixed per quota and so built
# once by the gateway (fewer arguments to encode per request), and the request's cost.
# Returns {admitted (0/1), denied rule (1-based, 0 = none), retry_ms, then per rule: remaining, reset_ms, bucket}.
# The last `extra` keys are not rules': they belong to what follows the check (CHECK_LOOKUP).
# The reply is read through `Check` (`rules.py`).
_CHECK_BODY = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local member = ARGV[1]
local n = #KEYS - %(extra)d
local admitted, denied, retry = 1, 0, 0
local used, cur, minb, nbs, curv = {}, {}, {}, {}, {}
local kinds, limits, spans, widths, costs = {}, {}, {}, {}, {}
for i = 1, n do
  local kind, limit, span, width = string.match(ARGV[i * 2], '^(%%a) (%%d+) (%%d+) (%%d+)$')
  limit, span, width = tonumber(limit), tonumber(span), tonumber(width)
  local cost = tonumber(ARGV[i * 2 + 1])
  kinds[i], limits[i], spans[i], widths[i], costs[i] = kind, limit, span, width, cost
  local key = KEYS[i]
  if kind == 'c' then
    used[i] = redis.call('ZCARD', key)
    -- Expired leases (a gateway died with the request) only matter when the slots look full.
    if used[i] + cost > limit then
      redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
      used[i] = redis.call('ZCARD', key)
    end
    if used[i] + cost > limit and denied == 0 then
      admitted, denied, retry = 0, i, 1000
    end
  else
    local c = math.floor(now / width)
    local nb = math.floor(span / width)
    local first = c - nb
    -- 'n' (the buckets' sum) and 'o' (the oldest bucket) are kept beside the buckets, so a check
    -- reads two fields; the buckets themselves are read only when the oldest left the window (once
    -- per bucket width at most) and to work out a refusal's retry time.
    local st = redis.call('HMGET', key, 'n', 'o', c)
    local u, o, cv = tonumber(st[1]) or 0, tonumber(st[2]), tonumber(st[3]) or 0
    if o == nil or o < first then
      local h = redis.call('HGETALL', key)
      local stale = {}
      u, o = 0, nil
      for j = 1, #h, 2 do
        local b = tonumber(h[j])
        if b ~= nil then
          if b < first then
            stale[#stale + 1] = h[j]
          else
            local v = tonumber(h[j + 1])
            u = u + v
            if o == nil or b < o then o = b end
            if b == c then cv = v end
          end
        end
      end
      if #stale > 0 then redis.call('HDEL', key, unpack(stale)) end
      if o == nil then
        redis.call('HDEL', key, 'n', 'o')  -- nothing left: the key goes
      else
        redis.call('HSET', key, 'n', u, 'o', o)
      end
    end
    used[i], cur[i], nbs[i], minb[i], curv[i] = u, c, nb, o, cv
    if u + cost > limit and denied == 0 then
      admitted, denied, retry = 0, i, span
      local h = redis.call('HGETALL', key)
      local live, counts = {}, {}
      for j = 1, #h, 2 do
        local b = tonumber(h[j])
        if b ~= nil and b >= first then
          live[#live + 1] = b
          counts[b] = tonumber(h[j + 1])
        end
      end
      table.sort(live)
      local need, freed = u + cost - limit, 0
      for _, b in ipairs(live) do
        freed = freed + counts[b]
        if freed >= need then
          retry = (b + nb + 1) * width - now
          break
        end
      end
    end
  end
end
local out = {admitted, denied, retry}
for i = 1, n do
  local kind, limit, span, width, cost = kinds[i], limits[i], spans[i], widths[i], costs[i]
  local key = KEYS[i]
  local spent = used[i]
  if admitted == 1 then
    spent = spent + cost
    if kind == 'c' then
      redis.call('ZADD', key, now + span, member)
      redis.call('PEXPIRE', key, span * 2)
    elseif cost > 0 then
      -- The key lives until its newest bucket leaves the window: extended when a bucket is created.
      -- The bucket and the sum in one write (both were read by the check).
      if minb[i] == nil then
        minb[i] = cur[i]
        redis.call('HSET', key, cur[i], curv[i] + cost, 'n', used[i] + cost, 'o', cur[i])
      else
        redis.call('HSET', key, cur[i], curv[i] + cost, 'n', used[i] + cost)
      end
      -- The key lives until its newest bucket leaves the window: extended when a bucket is created.
      if curv[i] == 0 then redis.call('PEXPIRE', key, span + width * 2) end
    end
  end
  local remaining = limit - spent
  if remaining < 0 then remaining = 0 end
  local reset = 0
  if kind ~= 'c' and spent > 0 and minb[i] ~= nil then
    reset = (minb[i] + nbs[i] + 1) * width - now
  end
  out[#out + 1] = remaining
  out[#out + 1] = reset
  out[#out + 1] = cur[i] or 0
end
"""
CHECK = Script("ratelimit_check", _CHECK_BODY % {"extra": 0} + "return out\n")

# The check, then (only if admitted) the response cache's lookup of the same request: one round trip
# instead of two (single Redis node only: under Redis Cluster the cache key lives in another slot).
# KEYS: the rules' keys, then the cache entry and its single-flight lock. ARGV: CHECK's, then the lock
# token and lease (ms). Returns CHECK's reply plus, when admitted, the lookup's answer
# (`gateway/redis/piggyback.py`).
CHECK_LOOKUP = Script("ratelimit_check_cache_lookup", _CHECK_BODY % {"extra": 2} + "local a = 2 + n * 2\n"
                      + LOOKUP_LUA + "return out\n")

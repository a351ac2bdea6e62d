"""Lua scripts: every multi-step mutation is one atomic server-side step.

All keys a script touches share a hash tag, so the scripts run on Redis Cluster too. Scripts
that change a record publish its id on the invalidation channel in the same step.
Return values: a status string, or the record's fields as a flat list.
"""

from __future__ import annotations

from ._redis_limits_script import PEEK_LIMITS, RATE_LIMITS

__all__ = [
    "ATTEMPT",
    "FLUSH_USAGE",
    "INSERT",
    "INSERT_SESSION",
    "PEEK_LIMITS",
    "RATE_LIMIT",
    "RATE_LIMITS",
    "REVOKE",
    "ROTATE",
    "UPDATE",
]

# KEYS[1]=record  ARGV[1]=channel ARGV[2]=id, then field/value pairs
INSERT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 'exists' end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 'ok'
"""

# KEYS[1]=record  ARGV[1]=channel ARGV[2]=id ARGV[3]=number of set pairs, pairs, delete fields
# A rotated key's expiry (its grace end) may only be shortened: 'capped:<grace end>' otherwise.
UPDATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 'missing' end
local n = tonumber(ARGV[3])
local cap = redis.call('HGET', KEYS[1], 'to') and redis.call('HGET', KEYS[1], 'expires')
if cap then
  for i = 4, 3 + 2 * n, 2 do
    if ARGV[i] == 'expires' and tonumber(ARGV[i + 1]) > tonumber(cap) then
      return 'capped:' .. cap
    end
  end
  for i = 4 + 2 * n, #ARGV do
    if ARGV[i] == 'expires' then return 'capped:' .. cap end
  end
end
if n > 0 then redis.call('HSET', KEYS[1], unpack(ARGV, 4, 3 + 2 * n)) end
if #ARGV > 3 + 2 * n then redis.call('HDEL', KEYS[1], unpack(ARGV, 4 + 2 * n)) end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return redis.call('HGETALL', KEYS[1])
"""

# Revokes a key record or a session (both keep the time in 'revoked'; the first one stays).
# KEYS[1]=record or session  ARGV[1]=channel ARGV[2]=id ARGV[3]=now_us
REVOKE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 'missing' end
redis.call('HSETNX', KEYS[1], 'revoked', ARGV[3])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return redis.call('HGETALL', KEYS[1])
"""

# KEYS[1]=old record KEYS[2]=new record
# ARGV: channel, old id, new id, new digest, new hint, now_us, grace_end_us
ROTATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 'missing' end
local f = redis.call('HMGET', KEYS[1], 'revoked', 'expires', 'to')
if f[1] then return 'revoked' end
local now = tonumber(ARGV[6])
if f[2] and tonumber(f[2]) <= now then return 'expired' end
if f[3] then return 'rotated:' .. f[3] end
if redis.call('EXISTS', KEYS[2]) == 1 then return 'exists' end
local old = redis.call('HGETALL', KEYS[1])
local lineage = redis.call('HGET', KEYS[1], 'lineage') or ARGV[2]
local skip = {id=1, created=1, revoked=1, hint=1, from=1, to=1, digest=1, lineage=1}
local new = {'id', ARGV[3], 'created', ARGV[6], 'hint', ARGV[5], 'digest', ARGV[4],
             'from', ARGV[2], 'lineage', lineage}
for i = 1, #old, 2 do
  if not skip[old[i]] then
    new[#new + 1] = old[i]
    new[#new + 1] = old[i + 1]
  end
end
redis.call('HSET', KEYS[2], unpack(new))
local expires = ARGV[7]
if f[2] and tonumber(f[2]) < tonumber(ARGV[7]) then expires = f[2] end
redis.call('HSET', KEYS[1], 'expires', expires, 'to', ARGV[3])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2])}
"""

# KEYS[1]=session  ARGV[1]=time to live in ms, then field/value pairs
INSERT_SESSION = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 'exists' end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 'ok'
"""

# One rate-limit step on Redis' own clock, so every instance shares one time line, for one
# request or for several of one key at once (the requests of one key that an event loop
# sends in one flush: the first ones are accepted while there is room, the rest refused,
# all in this one atomic step). The state of a key lineage's budget is one of two structures
# (both under the lineage's hash tag):
# * ARGV[4] == 0 (limits up to EXACT_LIMIT, see _sliding_log): an exact sliding log, a
#   sorted set of accepted request times (KEYS[1]); never more than `limit` in any window.
# * ARGV[4] == n > 0 (larger limits): counts per sub-window of ceil(window / n) ms, a hash
#   (KEYS[2]) of at most n + 1 fields. The oldest sub-window the window touches counts in
#   full, so a request may be refused up to one sub-window early, never accepted late.
# A change of limit that moves between the two folds the old state into the new one, counting
# every request the old one held (log -> counts exactly; counts -> log at the end of their
# sub-window, i.e. conservatively), so the budget survives updates.
# KEYS[1]=log KEYS[2]=counts  ARGV[1]=limit ARGV[2]=window ms ARGV[3]=unique member prefix
# ARGV[4]=sub-windows (0: exact log) ARGV[5]=requests to charge (k >= 1)
# Returns {accepted (the first `accepted` of the k requests), remaining after them,
# retry_after_ms, reset_ms} (the last two for the refused ones).
RATE_LIMIT = """
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local n = tonumber(ARGV[4])
local k = tonumber(ARGV[5])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if n == 0 then
  if redis.call('EXISTS', KEYS[2]) == 1 then
    -- only the newest `limit` requests can matter to the decision: fold those
    local width = tonumber(redis.call('HGET', KEYS[2], 'w') or '1')
    local h = redis.call('HGETALL', KEYS[2])
    local buckets = {}
    for i = 1, #h, 2 do
      if h[i] ~= 'w' then buckets[#buckets + 1] = {tonumber(h[i]), tonumber(h[i + 1])} end
    end
    table.sort(buckets, function(a, b) return a[1] > b[1] end)
    local room = limit
    for _, bucket in ipairs(buckets) do
      local stamp = (bucket[1] + 1) * width - 1
      for j = 1, math.min(bucket[2], room) do
        redis.call('ZADD', KEYS[1], stamp, 'f' .. bucket[1] .. ':' .. j)
      end
      room = room - math.min(bucket[2], room)
      if room == 0 then break end
    end
    redis.call('DEL', KEYS[2])
    redis.call('PEXPIRE', KEYS[1], window + width)
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  local count = redis.call('ZCARD', KEYS[1])
  local accepted = math.min(k, math.max(limit - count, 0))
  if accepted > 0 then
    local members = {}
    for j = 1, accepted do
      members[2 * j - 1] = now
      members[2 * j] = ARGV[3] .. ':' .. j
    end
    redis.call('ZADD', KEYS[1], unpack(members))
    redis.call('PEXPIRE', KEYS[1], window)
    count = count + accepted
  end
  if accepted == k then return {accepted, limit - count, 0, window} end
  local oldest = redis.call('ZRANGE', KEYS[1], count - limit, count - limit, 'WITHSCORES')
  local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  return {accepted, 0, tonumber(oldest[2]) + window - now, tonumber(newest[2]) + window - now}
end
local width = math.ceil(window / n)
local current = math.floor(now / width)
local first = current - n
local stored = tonumber(redis.call('HGET', KEYS[2], 'w') or width)
if stored ~= width then
  -- the window changed: keep the counts, each in the sub-window holding its end
  local h = redis.call('HGETALL', KEYS[2])
  redis.call('DEL', KEYS[2])
  for i = 1, #h, 2 do
    if h[i] ~= 'w' then
      local b = math.floor(((tonumber(h[i]) + 1) * stored - 1) / width)
      redis.call('HINCRBY', KEYS[2], b, tonumber(h[i + 1]))
    end
  end
end
redis.call('HSET', KEYS[2], 'w', width)
if redis.call('EXISTS', KEYS[1]) == 1 then
  local log = redis.call('ZRANGEBYSCORE', KEYS[1], now - window + 1, '+inf', 'WITHSCORES')
  for i = 2, #log, 2 do
    redis.call('HINCRBY', KEYS[2], math.floor(tonumber(log[i]) / width), 1)
  end
  redis.call('DEL', KEYS[1])
end
local h = redis.call('HGETALL', KEYS[2])
local count = 0
local oldest = nil
local newest = nil
local gone = {}
for i = 1, #h, 2 do
  if h[i] ~= 'w' then
    local b = tonumber(h[i])
    if b < first then
      gone[#gone + 1] = h[i]
    else
      count = count + tonumber(h[i + 1])
      if oldest == nil or b < oldest then oldest = b end
      if newest == nil or b > newest then newest = b end
    end
  end
end
if #gone > 0 then redis.call('HDEL', KEYS[2], unpack(gone)) end
local accepted = math.min(k, math.max(limit - count, 0))
if accepted > 0 then
  redis.call('HINCRBY', KEYS[2], current, accepted)
  redis.call('PEXPIRE', KEYS[2], window + width)
  count = count + accepted
  if oldest == nil then oldest = current end
  newest = current
end
if accepted == k then return {accepted, limit - count, 0, window} end
return {accepted, 0, (oldest + n + 1) * width - now, (newest + n + 1) * width - now}
"""

# A throttle slot (dashboard sign-in attempts): at most ARGV[1] slots in any ARGV[2] ms, on
# Redis' clock. KEYS[1]=slots (sorted set)  ARGV[3]=ticket naming the slot (so a successful
# sign-in can hand its slot back with ZREM). Returns 1 when a slot was taken, else 0.
ATTEMPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# One key's share of a usage flush, written once: a retried flush (same flush id) skips the
# keys an earlier, partial try already wrote, so nothing is counted twice.
# KEYS[1]=usage hash, KEYS[2..]=history hashes (one per day)
# ARGV[1]=flush id ARGV[2]=count ARGV[3]=last use (us, '' for none) ARGV[4]=history TTL (s),
# then triples (index into KEYS, field, n)
FLUSH_USAGE = """
if redis.call('HGET', KEYS[1], 'flush') == ARGV[1] then return 0 end
if tonumber(ARGV[2]) > 0 then redis.call('HINCRBY', KEYS[1], 'count', ARGV[2]) end
if ARGV[3] ~= '' then
  local last = redis.call('HGET', KEYS[1], 'last')
  if not last or tonumber(last) < tonumber(ARGV[3]) then
    redis.call('HSET', KEYS[1], 'last', ARGV[3])
  end
end
redis.call('HSET', KEYS[1], 'flush', ARGV[1])
for i = 5, #ARGV, 3 do
  redis.call('HINCRBY', KEYS[tonumber(ARGV[i])], ARGV[i + 1], ARGV[i + 2])
end
for i = 2, #KEYS do redis.call('EXPIRE', KEYS[i], ARGV[4]) end
return 1
"""

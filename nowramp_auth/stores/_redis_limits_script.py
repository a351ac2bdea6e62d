"""The Lua step of a key with several rate limits (``RATE_LIMITS``): every limit's counter
is checked, then the requests that fit all of them are counted in each, in one atomic step.

Each counter keeps the structure :data:`~._redis_scripts.RATE_LIMIT` keeps for one limit (an
exact sliding log up to 1,000 requests per window, counts per sub-window above, folded into
each other when a limit changes), under the lineage's hash tag, so the step runs on Redis
Cluster. A request refused by one limit spends nothing of the others.

With credits, the key's credits hash (fields r: left, a: anchor ms, d: refills done) is
checked in the same step: refills due on the application's clock (ARGV) top the count up to
the refill's amount; the requests that fit every limit *and* the credits are accepted, each
spending one credit.

KEYS: log and counts of limit 1, of limit 2, ...; then the credits hash (with credits).
ARGV: m (limits, may be 0), then limit, window ms, sub-windows (0: exact log) for each; the
unique member prefix; k (requests to charge, >= 1); then with credits: '1', the credits
one request costs, refill amount, refill period ms (0: none), the application's now ms (else
'0' and placeholders).
Returns {accepted (the first `accepted` of the k), remaining of the limit closest to
refusing after them, that limit's size (0: no limit), retry_after_ms, reset_ms, that limit's
window ms, credits left (-1: no credits), 1 when the credits refused the rest, the index
of the refusing limit among the m (from 0; -1: none refused, or the credits did)}.
"""

from __future__ import annotations

from ._sliding_log import SUB_WINDOWS

__all__ = ["PEEK_LIMITS", "RATE_LIMITS"]

RATE_LIMITS = """
local m = tonumber(ARGV[1])
local member = ARGV[3 * m + 2]
local k = tonumber(ARGV[3 * m + 3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local function prepare_log(s)
  if redis.call('EXISTS', s.counts) == 1 then
    -- only the newest `limit` requests can matter to the decision: fold those
    local width = tonumber(redis.call('HGET', s.counts, 'w') or '1')
    local h = redis.call('HGETALL', s.counts)
    local buckets = {}
    for i = 1, #h, 2 do
      if h[i] ~= 'w' then buckets[#buckets + 1] = {tonumber(h[i]), tonumber(h[i + 1])} end
    end
    table.sort(buckets, function(a, b) return a[1] > b[1] end)
    local room = s.limit
    for _, bucket in ipairs(buckets) do
      local stamp = (bucket[1] + 1) * width - 1
      for j = 1, math.min(bucket[2], room) do
        redis.call('ZADD', s.log, stamp, 'f' .. bucket[1] .. ':' .. j)
      end
      room = room - math.min(bucket[2], room)
      if room == 0 then break end
    end
    redis.call('DEL', s.counts)
    redis.call('PEXPIRE', s.log, s.window + width)
  end
  redis.call('ZREMRANGEBYSCORE', s.log, '-inf', now - s.window)
  s.count = redis.call('ZCARD', s.log)
end

local function prepare_counts(s)
  local width = math.ceil(s.window / s.n)
  s.width = width
  s.current = math.floor(now / width)
  local stored = tonumber(redis.call('HGET', s.counts, 'w') or width)
  if stored ~= width then
    local h = redis.call('HGETALL', s.counts)
    redis.call('DEL', s.counts)
    for i = 1, #h, 2 do
      if h[i] ~= 'w' then
        local b = math.floor(((tonumber(h[i]) + 1) * stored - 1) / width)
        redis.call('HINCRBY', s.counts, b, tonumber(h[i + 1]))
      end
    end
  end
  redis.call('HSET', s.counts, 'w', width)
  if redis.call('EXISTS', s.log) == 1 then
    local log = redis.call('ZRANGEBYSCORE', s.log, now - s.window + 1, '+inf', 'WITHSCORES')
    for i = 2, #log, 2 do
      redis.call('HINCRBY', s.counts, math.floor(tonumber(log[i]) / width), 1)
    end
    redis.call('DEL', s.log)
  end
  local h = redis.call('HGETALL', s.counts)
  local first = s.current - s.n
  local gone = {}
  s.count = 0
  for i = 1, #h, 2 do
    if h[i] ~= 'w' then
      local b = tonumber(h[i])
      if b < first then
        gone[#gone + 1] = h[i]
      else
        s.count = s.count + tonumber(h[i + 1])
        if s.oldest == nil or b < s.oldest then s.oldest = b end
        if s.newest == nil or b > s.newest then s.newest = b end
      end
    end
  end
  if #gone > 0 then redis.call('HDEL', s.counts, unpack(gone)) end
end

local budgets = {}
local accepted = k
local rate_room = k
for i = 1, m do
  local s = {log = KEYS[2 * i - 1], counts = KEYS[2 * i], limit = tonumber(ARGV[3 * i - 1]),
             window = tonumber(ARGV[3 * i]), n = tonumber(ARGV[3 * i + 1])}
  if s.n == 0 then prepare_log(s) else prepare_counts(s) end
  accepted = math.min(accepted, math.max(s.limit - s.count, 0))
  budgets[i] = s
end
rate_room = accepted

local credits_left, exhausted, credit_retry = -1, 0, 0
local ck = KEYS[2 * m + 1]
if ARGV[3 * m + 4] == '1' then
  local cost = tonumber(ARGV[3 * m + 5])
  local amount, every = tonumber(ARGV[3 * m + 6]), tonumber(ARGV[3 * m + 7])
  local appnow = tonumber(ARGV[3 * m + 8])
  local c = redis.call('HMGET', ck, 'r', 'a', 'd')
  local left = tonumber(c[1] or '0')
  local anchor = tonumber(c[2] or appnow)
  local done = tonumber(c[3] or '0')
  if every > 0 then
    local periods = math.max(0, math.floor((appnow - anchor) / every))
    if periods > done then
      if left < amount then left = amount end
      done = periods
      redis.call('HSET', ck, 'r', left, 'a', anchor, 'd', done)
    end
    credit_retry = anchor + (done + 1) * every - appnow
  end
  local affordable = math.floor(left / cost)
  if affordable < accepted then accepted = affordable end
  if accepted < k and affordable <= rate_room then exhausted = 1 end
  if accepted > 0 then redis.call('HINCRBY', ck, 'r', -accepted * cost) end
  credits_left = left - accepted * cost
end

local closest = nil
for i = 1, m do
  local s = budgets[i]
  if accepted > 0 then
    if s.n == 0 then
      local members = {}
      for j = 1, accepted do
        members[2 * j - 1] = now
        members[2 * j] = member .. ':' .. j
      end
      redis.call('ZADD', s.log, unpack(members))
      redis.call('PEXPIRE', s.log, s.window)
    else
      redis.call('HINCRBY', s.counts, s.current, accepted)
      redis.call('PEXPIRE', s.counts, s.window + s.width)
      if s.oldest == nil then s.oldest = s.current end
      s.newest = s.current
    end
    s.count = s.count + accepted
  end
  if closest == nil or s.limit - s.count < closest.limit - closest.count then closest = s end
end
local c_remaining, c_limit, c_window = 0, 0, 0
if closest ~= nil then
  c_remaining, c_limit, c_window = closest.limit - closest.count, closest.limit, closest.window
end
if accepted == k then
  return {accepted, c_remaining, c_limit, 0, c_window, c_window, credits_left, 0, -1}
end
if exhausted == 1 then
  return {accepted, c_remaining, c_limit, credit_retry, c_window, c_window, credits_left, 1, -1}
end
-- Some were refused: room comes back when the full limit that frees last has room.
local retry, reset, which, index = 0, 0, nil, -1
for i = 1, m do
  local s = budgets[i]
  if s.count >= s.limit then
    local r, z
    if s.n == 0 then
      local oldest = redis.call('ZRANGE', s.log, s.count - s.limit, s.count - s.limit,
                                'WITHSCORES')
      local newest = redis.call('ZRANGE', s.log, -1, -1, 'WITHSCORES')
      r = tonumber(oldest[2]) + s.window - now
      z = tonumber(newest[2]) + s.window - now
    else
      r = (s.oldest + s.n + 1) * s.width - now
      z = (s.newest + s.n + 1) * s.width - now
    end
    if which == nil or r > retry then retry, reset, which, index = r, z, s, i - 1 end
  end
end
return {accepted, 0, which.limit, retry, reset, which.window, credits_left, 0, index}
"""

# What RATE_LIMITS would count now, changing nothing (the dashboard's usage): per limit, the
# requests its log and its sub-window counts hold inside its window, on Redis' clock.
# KEYS: log and counts of limit 1, of limit 2, ...  ARGV: each limit's window ms.
PEEK_LIMITS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local used = {}
for i = 1, #ARGV do
  local window = tonumber(ARGV[i])
  local n = redis.call('ZCOUNT', KEYS[2 * i - 1], '(' .. (now - window), '+inf')
  local width = tonumber(redis.call('HGET', KEYS[2 * i], 'w') or '0')
  if width > 0 then
    local first = math.floor(now / width) - SUB_WINDOWS
    local h = redis.call('HGETALL', KEYS[2 * i])
    for j = 1, #h, 2 do
      if h[j] ~= 'w' and tonumber(h[j]) >= first then n = n + tonumber(h[j + 1]) end
    end
  end
  used[i] = n
end
return used
""".replace("SUB_WINDOWS", str(SUB_WINDOWS))

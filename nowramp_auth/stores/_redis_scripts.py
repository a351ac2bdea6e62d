"""Lua scripts: every multi-step mutation is one atomic server-side step.

All keys a script touches share a hash tag, so the scripts run on Redis Cluster too. Scripts
that change a record publish its id on the invalidation channel in the same step.
Return values: a status string, or the record's fields as a flat list.
"""

from __future__ import annotations

__all__ = ["INSERT", "INSERT_SESSION", "RATE_LIMIT", "REVOKE", "ROTATE", "UPDATE"]

# KEYS[1]=record  ARGV[1]=channel ARGV[2]=id, then field/value pairs
INSERT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 'exists' end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 'ok'
"""

# KEYS[1]=record  ARGV[1]=channel ARGV[2]=id ARGV[3]=number of set pairs, pairs, delete fields
UPDATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 'missing' end
local n = tonumber(ARGV[3])
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
local skip = {id=1, created=1, revoked=1, hint=1, from=1, to=1, digest=1}
local new = {'id', ARGV[3], 'created', ARGV[6], 'hint', ARGV[5], 'digest', ARGV[4],
             'from', ARGV[2]}
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

# Sliding log on Redis' own clock, so every instance shares one time line.
# KEYS[1]=log  ARGV[1]=limit ARGV[2]=window ms ARGV[3]=unique member
# Returns {allowed (0/1), remaining, retry_after_ms, reset_ms}.
RATE_LIMIT = """
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  return {0, 0, tonumber(oldest[2]) + window - now, tonumber(newest[2]) + window - now}
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return {1, limit - count - 1, 0, window}
"""

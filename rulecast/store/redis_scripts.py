"""The Lua scripts the Redis store runs: every write is one atomic script."""

_LIB = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function iso(ms)
  -- days to civil date (H. Hinnant's algorithm), UTC, as rulecast.message.now_iso()
  local s = math.floor(ms / 1000)
  local days = math.floor(s / 86400)
  local rem = s - days * 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
                          - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%03dZ', y, m, d,
    math.floor(rem / 3600), math.floor(rem / 60) % 60, rem % 60, ms % 1000)
end
local function drop(msg, times, channels, ck, name, id)
  local gone = redis.call('HDEL', msg, id)
  redis.call('ZREM', times, id)
  if ck then
    redis.call('ZREM', ck, id)
    if redis.call('EXISTS', ck) == 0 then redis.call('SREM', channels, name) end
  end
  return gone
end
local function hmget_all(msg, ids, out)
  for s = 1, #ids, 1000 do
    local part = redis.call('HMGET', msg, unpack(ids, s, math.min(#ids, s + 999)))
    for i = 1, #part do out[#out + 1] = part[i] end
  end
  return out
end
"""

# KEYS: id, msg, time, channels, op, then one channel key per item.
# ARGV: keep_recent_ms, max_per_channel (-1: none), pubsub channel ('' : none),
#       token flag ('1' or ''), op ttl, then per item: name, name as JSON,
#       time as JSON ('' : now), time in ms ('' : now), data as JSON.
# Returns {first id, the time used for items without one (JSON)}.
APPEND = _LIB + """
local keep, maxn, pubch = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local token, ttl = ARGV[4], tonumber(ARGV[5])
if token ~= '' and redis.call('EXISTS', KEYS[5]) == 1 then
  return redis.error_reply('REFUSED its sender gave this publish up')
end
local now = now_ms()
local nowjson = '"' .. iso(now) .. '"'
local frames, first = {}, nil
local n = (#ARGV - 5) / 5
for i = 1, n do
  local a = 5 + (i - 1) * 5
  local name, timejson, score = ARGV[a + 1], ARGV[a + 3], tonumber(ARGV[a + 4])
  if timejson == '' then timejson, score = nowjson, now end
  local id = redis.call('INCR', KEYS[1])
  first = first or id
  local sid = string.format('%d', id)
  local ck = KEYS[5 + i]
  local frame = '{"type":"message","id":' .. sid .. ',"channel":' .. ARGV[a + 2]
    .. ',"time":' .. timejson .. ',"data":' .. ARGV[a + 5] .. '}'
  redis.call('HSET', KEYS[2], sid, frame)
  redis.call('ZADD', ck, id, sid)
  redis.call('ZADD', KEYS[3], score, sid)
  redis.call('SADD', KEYS[4], name)
  frames[i] = frame
  if maxn >= 0 then
    -- Oldest first, while over the limit and older than keep: amortised O(1) per
    -- message; an old message behind a younger one waits for prune().
    local card = redis.call('ZCARD', ck)
    while card > maxn do
      local oldest = redis.call('ZRANGE', ck, 0, 0)[1]
      local t = tonumber(redis.call('ZSCORE', KEYS[3], oldest))
      if t and t >= now - keep then break end
      drop(KEYS[2], KEYS[3], KEYS[4], ck, name, oldest)
      card = card - 1
    end
  end
end
if token ~= '' then
  redis.call('SET', KEYS[5], string.format('%d:%d', first, n), 'EX', ttl)
end
if pubch ~= '' then redis.call('PUBLISH', pubch, table.concat(frames, '\\n')) end
return {first, nowjson}
"""

# KEYS: op, msg. ARGV: ttl. What became of the publish with this token: nil when it
# was never stored (and now never will be), else {first id, frames…} (a pruned frame
# is false).
RESOLVE = _LIB + """
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], 'refused', 'EX', tonumber(ARGV[1]))
  return false
end
if v == 'refused' then return false end
local sep = string.find(v, ':', 1, true)
local first, n = tonumber(string.sub(v, 1, sep - 1)), tonumber(string.sub(v, sep + 1))
local ids = {}
for i = 0, n - 1 do ids[#ids + 1] = string.format('%d', first + i) end
return hmget_all(KEYS[2], ids, {first})
"""

# KEYS: msg, then channel keys. ARGV: after id, limit (-1: none), 'desc' for latest().
QUERY = _LIB + """
local limit, desc = tonumber(ARGV[2]), ARGV[3] == 'desc'
local ids = {}
for i = 2, #KEYS do
  local got
  if desc then
    got = redis.call('ZREVRANGEBYSCORE', KEYS[i], '+inf', '(' .. ARGV[1], 'LIMIT', 0, limit)
  elseif limit >= 0 then
    got = redis.call('ZRANGEBYSCORE', KEYS[i], '(' .. ARGV[1], '+inf', 'LIMIT', 0, limit)
  else
    got = redis.call('ZRANGEBYSCORE', KEYS[i], '(' .. ARGV[1], '+inf')
  end
  for _, id in ipairs(got) do ids[#ids + 1] = tonumber(id) end
end
if desc then table.sort(ids, function(a, b) return a > b end) else table.sort(ids) end
local n = #ids
if limit >= 0 and n > limit then n = limit end
local keep = {}
for i = 1, n do keep[i] = string.format('%d', ids[desc and (n - i + 1) or i]) end
return hmget_all(KEYS[1], keep, {})
"""

# KEYS: read. ARGV: user, upto. The mark in force afterwards.
MARK_READ = """
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local upto = tonumber(ARGV[2])
if upto > cur then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return upto
end
return cur
"""

# KEYS: id. ARGV: an id. Raises the counter to it if below; returns the counter before.
RAISE_ID = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if cur < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return cur
"""

# KEYS: msg, time, channels, then one channel key per id ('' name: unknown channel).
# ARGV: id, name pairs. How many messages went.
DROP = _LIB + """
local gone = 0
for i = 1, #ARGV / 2 do
  local name = ARGV[2 * i]
  local ck = nil
  if name ~= '' then ck = KEYS[3 + i] end
  gone = gone + drop(KEYS[1], KEYS[2], KEYS[3], ck, name, ARGV[2 * i - 1])
end
return gone
"""

# KEYS: msg, time, channels, channel. ARGV: max_per_channel, keep_recent_ms, name, at
# most how many to look at. Returns {gone, looked at}.
TRIM = _LIB + """
local maxn, keep, name, most = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local recent = now_ms() - keep
local over = redis.call('ZCARD', KEYS[4]) - maxn
if over <= 0 then
  if over + maxn == 0 then redis.call('SREM', KEYS[3], name) end
  return {0, 0}
end
if over > most then over = most end
local ids = redis.call('ZRANGE', KEYS[4], 0, over - 1)
local gone = 0
for _, id in ipairs(ids) do
  local t = tonumber(redis.call('ZSCORE', KEYS[2], id))
  if not t or t < recent then
    gone = gone + drop(KEYS[1], KEYS[2], KEYS[3], KEYS[4], name, id)
  end
end
return {gone, #ids}
"""

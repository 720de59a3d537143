"""The Lua scripts of the Redis Streams event log for leases, dead letters and a group's
lifecycle (delete, seek, idle expiry); keys as in store.redis.scripts. Each is one atomic
script, like the others."""

from __future__ import annotations

from wahook.store.redis.scripts import COMMON

# Helpers over ARGV pairs (sequence, lease) from index `first`: calls fn(seq, seq text)
# on each entry whose current lease is the one named, and returns their sequences.
_LEASED = """
local function each_leased(g, first, fn)
  local k = gkeys(g)
  local out = {}
  for i = first, #ARGV, 2 do
    local s = ARGV[i]
    if redis.call('HGET', k.lease, s) == ARGV[i + 1] then
      fn(k, tonumber(s), s)
      out[#out + 1] = tonumber(s)
    end
  end
  return out
end
"""

# ARGV: P, group, (seq, lease)... Returns the sequences acked.
ACK_LEASES = (
    COMMON
    + _LEASED
    + """
local g = ARGV[2]
return each_leased(g, 3, function(k, seq, s)
  redis.call('XACK', STREAM, g, sid(seq))
  redis.call('ZREM', k.due, member(seq))
  redis.call('HDEL', k.lease, s)
  redis.call('HDEL', k.err, s)
end)
"""
)

# ARGV: P, group, redeliver_at, error, (seq, lease)... Returns the sequences nacked. The
# entries move to the consumer '' (see RELEASE).
NACK_LEASES = (
    COMMON
    + _LEASED
    + """
local g, at, err = ARGV[2], ARGV[3], ARGV[4]
return each_leased(g, 5, function(k, seq, s)
  redis.call('ZADD', k.due, at, member(seq))
  redis.call('XCLAIM', STREAM, g, '', 0, sid(seq), 'JUSTID')
  redis.call('HSET', k.err, s, err)
end)
"""
)

# ARGV: P, group, deadline, (seq, lease)... Returns the sequences changed.
MODIFY_DEADLINES = (
    COMMON
    + _LEASED
    + """
local at = ARGV[3]
return each_leased(ARGV[2], 4, function(k, seq, s)
  redis.call('ZADD', k.due, at, member(seq))
end)
"""
)

# ARGV: P, group, error, now, (seq, lease)... Returns the sequences dead-lettered.
DEAD_LETTER = (
    COMMON
    + _LEASED
    + """
local g, err, now = ARGV[2], ARGV[3], ARGV[4]
return each_leased(g, 5, function(k, seq, s)
  local p = redis.call('XPENDING', STREAM, g, sid(seq), sid(seq), 1)
  to_dead(g, k, seq, p[1] and p[1][4] or 1, err, now)
end)
"""
)

# ARGV: P, group. Returns 1 when deleted, 0 when absent.
DELETE_GROUP = (
    COMMON
    + """
return delete_group(ARGV[2])
"""
)

# ARGV: P, group, kind, after_sequence, from_time, now. Returns -1 for no group, else the
# new position. Every pending entry goes (XACK: the position re-reads what is after it),
# and so do the dead letters after the position; those at or before it stay.
SEEK_GROUP = (
    COMMON
    + """
local g, now = ARGV[2], ARGV[6]
local k = gkeys(g)
if redis.call('EXISTS', k.meta) == 0 then return -1 end
local pos = start_position(ARGV[3], ARGV[4], ARGV[5])
local start = '-'
while true do
  local pel = redis.call('XPENDING', STREAM, g, start, '+', 1000)
  if #pel == 0 then break end
  local ids = {}
  for _, p in ipairs(pel) do
    local seq = seq_of(p[1])
    if not (p[2] == DEAD and seq <= pos) then
      ids[#ids + 1] = p[1]
      redis.call('HDEL', k.dead, dec(seq))
    end
    start = '(' .. p[1]
  end
  if #ids > 0 then redis.call('XACK', STREAM, g, unpack(ids)) end
end
redis.call('DEL', k.due, k.lease, k.err)
redis.call('XGROUP', 'SETID', STREAM, g, sid(pos))
redis.call('HSET', k.meta, 'last_active', now)
return pos
"""
)

# ARGV: P, now, group... Marks the existing ones active at now.
TOUCH_GROUPS = (
    COMMON
    + """
local now = tonumber(ARGV[2])
for i = 3, #ARGV do
  local meta = P .. ':group:' .. ARGV[i]
  local last = redis.call('HGET', meta, 'last_active')
  if last and tonumber(last) < now then redis.call('HSET', meta, 'last_active', ARGV[2]) end
end
return 0
"""
)

# ARGV: P, now. Deletes the groups idle past their expire_after; returns their names.
EXPIRE_GROUPS = (
    COMMON
    + """
local now = tonumber(ARGV[2])
local gone = {}
for _, g in ipairs(redis.call('SMEMBERS', P .. ':groups')) do
  local m = redis.call('HMGET', P .. ':group:' .. g, 'expire_after', 'last_active')
  local after = tonumber(m[1] or '0')
  if after > 0 and tonumber(m[2] or '0') + after <= now then
    delete_group(g)
    gone[#gone + 1] = g
  end
end
return gone
"""
)

# ARGV: P, group, after_sequence, limit. Returns -1 for no group, else
# {seq, attempts, dead_at, error, data, ...} in sequence order.
LIST_DEAD_LETTERS = (
    COMMON
    + """
local k = gkeys(ARGV[2])
if redis.call('EXISTS', k.meta) == 0 then return -1 end
local after, limit = tonumber(ARGV[3]), tonumber(ARGV[4])
local seqs = {}
for _, s in ipairs(redis.call('HKEYS', k.dead)) do
  if tonumber(s) > after then seqs[#seqs + 1] = tonumber(s) end
end
table.sort(seqs)
local out = {}
for i = 1, math.min(#seqs, limit) do
  local seq = seqs[i]
  local d = cjson.decode(redis.call('HGET', k.dead, dec(seq)))
  local e = redis.call('XRANGE', STREAM, sid(seq), sid(seq))
  if e[1] then
    out[#out + 1] = seq
    out[#out + 1] = d[1]
    out[#out + 1] = d[2]
    out[#out + 1] = d[3]
    out[#out + 1] = fields(e[1])['d']
  end
end
return out
"""
)

# The dead letters chosen by ARGV from index 4 (sequences), or all of them with ARGV[3]
# '1', as sequence texts.
_CHOSEN = """
local function chosen(k)
  if ARGV[3] == '1' then return redis.call('HKEYS', k.dead) end
  local out = {}
  for i = 4, #ARGV do
    if redis.call('HEXISTS', k.dead, ARGV[i]) == 1 then out[#out + 1] = ARGV[i] end
  end
  return out
end
"""

# ARGV: P, group, all (1/0), seq..., then the last ARGV is not a sequence but now.
# Returns -1 for no group, else how many became pending again (due at now, delivery
# count 0: the next delivery is attempt 1).
REDELIVER_DEAD_LETTERS = (
    COMMON
    + _CHOSEN
    + """
local g = ARGV[2]
local k = gkeys(g)
if redis.call('EXISTS', k.meta) == 0 then return -1 end
local now = table.remove(ARGV)
local n = 0
for _, s in ipairs(chosen(k)) do
  local seq = tonumber(s)
  redis.call('HDEL', k.dead, s)
  redis.call('XCLAIM', STREAM, g, '', 0, sid(seq), 'RETRYCOUNT', 0, 'JUSTID')
  redis.call('ZADD', k.due, now, member(seq))
  n = n + 1
end
return n
"""
)

# ARGV: P, group, all (1/0), seq... Returns -1 for no group, else how many were deleted.
DISCARD_DEAD_LETTERS = (
    COMMON
    + _CHOSEN
    + """
local g = ARGV[2]
local k = gkeys(g)
if redis.call('EXISTS', k.meta) == 0 then return -1 end
local n = 0
for _, s in ipairs(chosen(k)) do
  redis.call('HDEL', k.dead, s)
  redis.call('XACK', STREAM, g, sid(tonumber(s)))
  n = n + 1
end
return n
"""
)

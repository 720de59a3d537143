-- ARGV: P, group, consumer, max_count, now, deadline, max_scan, deadline_passed (the error
-- of a dead letter whose last attempt timed out).
-- Returns {-1} for an unknown group, else {head, scanned_to, lease, dead, seq, attempt,
-- data, ...}: scanned_to is the head, or how far a scan capped at max_scan got (nothing
-- after it was considered); lease names this fetch's deliveries; dead counts the due
-- entries moved to the dead letters.
local group, consumer = ARGV[2], ARGV[3]
local max_count, now, deadline = tonumber(ARGV[4]), ARGV[5], ARGV[6]
local max_scan = tonumber(ARGV[7])
local k = gkeys(group)
local meta = redis.call('HMGET', k.meta, 'filter', 'max_attempts')
local filter = meta[1]
if not filter then return {-1} end
local max_attempts = tonumber(meta[2] or '10')
local due = k.due
local head = tonumber(redis.call('GET', P .. ':head') or '0')
local out = {head, head, 0, 0}
if max_count <= 0 then return out end
local lease = dec(redis.call('HINCRBY', k.meta, 'leases', 1))
out[3] = lease
local leased = {}
-- Redeliveries first, most overdue first; those whose attempts are spent go to the dead
-- letters on the way.
local got = 0
while got < max_count do
  local want = max_count - got
  local expired = redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', 0, want)
  for _, m in ipairs(expired) do
    local seq = tonumber(m)
    local p = redis.call('XPENDING', STREAM, group, sid(seq), sid(seq), 1)
    local claimed = {}
    if p[1] and p[1][4] >= max_attempts then
      to_dead(group, k, seq, p[1][4], redis.call('HGET', k.err, dec(seq)) or ARGV[8], now)
      out[4] = out[4] + 1
    else
      claimed = redis.call('XCLAIM', STREAM, group, consumer, 0, sid(seq))
      if claimed[1] then
        redis.call('ZADD', due, deadline, m)
        redis.call('HDEL', k.err, dec(seq))
        leased[#leased + 1] = dec(seq)
        leased[#leased + 1] = lease
        out[#out + 1] = seq
        out[#out + 1] = p[1][4] + 1
        out[#out + 1] = fields(claimed[1])['d']
        got = got + 1
      else
        -- Gone from the stream (cannot happen while prune keeps pending events): drop it.
        redis.call('ZREM', due, m)
        redis.call('HDEL', k.lease, dec(seq))
        redis.call('XACK', STREAM, group, sid(seq))
      end
    end
  end
  if #expired < want then break end
end
-- Then new events after the group's position, the non-matching acked at once.
local matches = filter_matcher(filter)
local scanned, exhausted, scanned_to = 0, false, head
while got < max_count do
  if scanned >= max_scan then
    -- A sparse filter over a long backlog: stop scanning (a script blocks the Redis)
    -- and report how far it got, so the caller fetches again rather than waiting.
    out[2] = scanned_to
    break
  end
  local want = max_count - got
  local r = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', want,
    'STREAMS', STREAM, '>')
  local entries = (r and r[1]) and r[1][2] or {}
  local skip = {}
  for _, entry in ipairs(entries) do
    local e = fields(entry)
    local seq = seq_of(entry[1])
    if matches(e) then
      redis.call('ZADD', due, deadline, member(seq))
      leased[#leased + 1] = dec(seq)
      leased[#leased + 1] = lease
      out[#out + 1] = seq
      out[#out + 1] = 1
      out[#out + 1] = e['d']
      got = got + 1
    else
      skip[#skip + 1] = entry[1]
    end
  end
  if #skip > 0 then redis.call('XACK', STREAM, group, unpack(skip)) end
  scanned = scanned + #entries
  if #entries > 0 then scanned_to = seq_of(entries[#entries][1]) end
  if #entries < want then exhausted = true break end
end
if exhausted then
  -- Everything up to the head was considered: the position moves to the head even
  -- when its newest events were pruned (as the SQLite log's does).
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', STREAM)) do
    local gf = {}
    for i = 1, #g, 2 do gf[g[i]] = g[i + 1] end
    if gf['name'] == group and seq_of(gf['last-delivered-id']) < head then
      redis.call('XGROUP', 'SETID', STREAM, group, sid(head))
    end
  end
end
for i = 1, #leased, 1000 do
  redis.call('HSET', k.lease, unpack(leased, i, math.min(i + 999, #leased)))
end
return out

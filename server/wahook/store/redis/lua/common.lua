-- What every script starts with: the key prefix P (ARGV[1]) and the helpers shared by
-- the scripts (keys: store/redis/scripts.py).
local P = ARGV[1]
local STREAM = P .. ':events'
local function member(seq) return string.format('%020d', seq) end
local function sid(seq) return '0-' .. string.format('%d', seq) end
local function seq_of(id) return tonumber(string.match(id, '^0%-(%d+)$')) end
local function fields(entry)
  local f = {}
  local kv = entry[2]
  for i = 1, #kv, 2 do f[kv[i]] = kv[i + 1] end
  return f
end
local DEAD = 'wahook:dead-letters'
local function gkeys(g)
  return {meta = P .. ':group:' .. g, due = P .. ':due:' .. g, lease = P .. ':lease:' .. g,
          err = P .. ':err:' .. g, dead = P .. ':dead:' .. g}
end
local function dec(seq) return string.format('%d', seq) end
-- A pending entry to the dead letters, with its delivery count and error.
local function to_dead(g, k, seq, attempts, err, now)
  redis.call('XCLAIM', STREAM, g, DEAD, 0, sid(seq), 'JUSTID')
  redis.call('ZREM', k.due, member(seq))
  redis.call('HDEL', k.lease, dec(seq))
  redis.call('HDEL', k.err, dec(seq))
  redis.call('HSET', k.dead, dec(seq), cjson.encode({attempts, now, err}))
end
local function delete_group(g)
  local k = gkeys(g)
  if redis.call('EXISTS', k.meta) == 0 then return 0 end
  redis.call('XGROUP', 'DESTROY', STREAM, g)
  redis.call('DEL', k.meta, k.due, k.lease, k.err, k.dead)
  redis.call('SREM', P .. ':groups', g)
  return 1
end
-- Where a group starts (or is sought to): kind, after_sequence, from_time.
local function start_position(kind, after, from_time)
  local head = tonumber(redis.call('GET', P .. ':head') or '0')
  if kind == 'latest' then return head end
  if kind == 'after_sequence' then return math.max(0, tonumber(after)) end
  if kind ~= 'from_time' then return 0 end
  -- Binary search by sequence for the first event received at or after from_time:
  -- exact while received times ascend with sequences (one clock); across replicas,
  -- clock skew between them can move the start by about that skew.
  local t = tonumber(from_time)
  local lo, hi, found = 1, head, nil
  while lo <= hi do
    local mid = math.floor((lo + hi) / 2)
    local e = redis.call('XRANGE', STREAM, sid(mid), '+', 'COUNT', 1)
    if not e[1] then
      hi = mid - 1
    else
      local s = seq_of(e[1][1])
      if tonumber(fields(e[1])['r']) >= t then
        found = s
        hi = mid - 1
      else
        lo = s + 1
      end
    end
  end
  return found and (found - 1) or head
end

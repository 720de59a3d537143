"""The Lua scripts of the Redis Streams event log: each write (and each read that must see
one consistent state) is one script, so it is atomic across every replica sharing the
Redis, and one round trip (EVALSHA; redis-py loads a script once and again after a
restart flushed it).

Keys, all under one prefix ``P`` (``WAHOOK_REDIS_PREFIX``), built inside the scripts from
``ARGV[1]``, so the log needs a standalone Redis (with replicas or Sentinel), not Redis
Cluster:

- ``P:head``: the sequence counter (INCRBY); it survives pruning, so a sequence is never
  handed out twice.
- ``P:events``: the stream. Entry ``0-<sequence>`` holds ``d`` (the serialised Event,
  sequence unset), ``i`` (its id), ``k`` (dedupe key), ``t`` (EventType), ``m`` (Meta's
  message type, on message and echo events), ``p`` (phone_number_id), ``w`` (waba_id),
  ``r`` (received time, Unix seconds) and, on status events, ``s`` (the outbound message
  id). Stream ids order like sequences, so GetEvent / ListEvents by sequence are XRANGEs.
- ``P:ids``: hash event id -> sequence (dedupe: an event's id is a hash of its dedupe
  key, and a hit compares the stored ``k``, as the SQLite log does).
- ``P:groups``: set of group names; ``P:group:<name>``: hash ``filter`` (store.filters'
  canonical text), ``created_at``, ``leases`` (the lease counter, started at the creation
  time in milliseconds), ``max_attempts``, ``expire_after``, ``last_active``. The stream's
  consumer group of the same name holds the position (last-delivered-id) and the pending
  entries (PEL: owner, delivery count = attempt).
- ``P:lease:<name>``: hash sequence -> the lease of its current delivery; an ack, nack or
  deadline change acts only when the lease it names is this one. ``P:err:<name>``: hash
  sequence -> why its last attempt failed (a nack's error, a released stream).
- ``P:dead:<name>``: hash sequence -> JSON [attempts, dead_at, error], the dead letters.
  They stay in the PEL, owned by the consumer ``wahook:dead-letters`` (a subscriber's
  consumer name always has a ``#``), because only an entry still pending can be made
  pending again (XCLAIM ... RETRYCOUNT 0) when a dead letter is redelivered.
- ``P:due:<name>``: zset of the group's pending sequences (members zero-padded to 20
  digits so equal scores order by sequence) scored by the time each is due again: its ack
  deadline, a nack's redeliver_at, or the release time. Why not XAUTOCLAIM's idle time:
  the contract's clock is the caller's ``now``, every fetch has its own ack deadline and
  a nack sets any delay; an idle time since the last delivery can express none of that.
  Entries nacked or released move (XCLAIM JUSTID, no delivery counted) to the consumer
  ``""``, so that a stream's release never cuts a nack's delay short, and a released
  consumer is deleted from the group (XGROUP DELCONSUMER) instead of piling up.
- ``P:st:<message id>``: the forward-only status record (``s`` state, ``t`` time, ``r``
  recipient, ``e`` serialised errors); ``P:sh:<message id>``: its history, hash sequence
  -> JSON [state, occurred_at, applied, event_id], pruned with its events.
"""

from __future__ import annotations

from wahook.core.status_order import advances
from wahook.v1 import status_pb2


def _advances_table() -> str:
    """core.status_order as a Lua table ``["cur:new"] = true``: the forward-only rule has
    one source, ported by enumerating every pair of known states."""
    states = list(status_pb2.DeliveryState.values())
    pairs = [f'["{cur}:{new}"]=true' for cur in states for new in states if advances(cur, new)]
    return "{" + ",".join(pairs) + "}"


_COMMON = """
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
"""

COMMON = _COMMON  # for store.redis_group_scripts

# ARGV: P, number of appends, then per append its event count n and n * 13 values:
# id, dedupe_key, data, type, message_type ('' none), phone_number_id, waba_id,
# received_at, status message id ('' none), state, occurred_at, recipient_id, errors.
# Returns per append {new_count, seq...} or {-1, index} when the id at index is
# stored for another dedupe key (nothing of that append written).
APPEND = (
    _COMMON
    + "local ADVANCES = "
    + _advances_table()
    + """
local HEAD, IDS = P .. ':head', P .. ':ids'
local results = {}
local a = 3
for _ = 1, tonumber(ARGV[2]) do
  local n = tonumber(ARGV[a])
  local base = a + 1
  a = base + n * 13
  -- Check the whole append before writing any of it.
  local seqs, added, refused, new = {}, {}, nil, 0
  local next_seq = tonumber(redis.call('GET', HEAD) or '0') + 1
  for i = 0, n - 1 do
    local o = base + i * 13
    local id, key = ARGV[o], ARGV[o + 1]
    local hit = added[id]
    if hit then
      if hit[2] ~= key then refused = i break end
      seqs[#seqs + 1] = hit[1]
    else
      local stored = redis.call('HGET', IDS, id)
      if stored then
        local e = redis.call('XRANGE', STREAM, '0-' .. stored, '0-' .. stored)
        if e[1] and fields(e[1])['k'] ~= key then refused = i break end
        seqs[#seqs + 1] = tonumber(stored)
      else
        local s = next_seq + new
        new = new + 1
        added[id] = {s, key, o}
        seqs[#seqs + 1] = s
      end
    end
  end
  if refused then
    results[#results + 1] = {-1, refused}
  else
    if new > 0 then redis.call('INCRBY', HEAD, new) end
    for i = 0, n - 1 do
      local o = base + i * 13
      local entry = added[ARGV[o]]
      if entry and entry[3] == o then
        local s = entry[1]
        local f = {'d', ARGV[o + 2], 'i', ARGV[o], 'k', ARGV[o + 1], 't', ARGV[o + 3],
                   'p', ARGV[o + 5], 'w', ARGV[o + 6], 'r', ARGV[o + 7]}
        if ARGV[o + 4] ~= '' then f[#f + 1] = 'm' f[#f + 1] = ARGV[o + 4] end
        local mid = ARGV[o + 8]
        if mid ~= '' then f[#f + 1] = 's' f[#f + 1] = mid end
        redis.call('XADD', STREAM, sid(s), unpack(f))
        redis.call('HSET', IDS, ARGV[o], s)
        if mid ~= '' then
          local st, occurred, rcpt, errs = ARGV[o + 9], ARGV[o + 10], ARGV[o + 11], ARGV[o + 12]
          local rec = P .. ':st:' .. mid
          local cur = redis.call('HGET', rec, 's')
          local applied = ADVANCES[(cur or '0') .. ':' .. st] == true
          if not cur then
            if applied then
              redis.call('HSET', rec, 's', st, 't', occurred, 'r', rcpt, 'e', errs)
            else
              redis.call('HSET', rec, 's', '0', 't', '0', 'r', rcpt, 'e', '')
            end
          elseif applied then
            redis.call('HSET', rec, 's', st, 't', occurred, 'e', errs)
            if rcpt ~= '' then redis.call('HSET', rec, 'r', rcpt) end
          end
          redis.call('HSET', P .. ':sh:' .. mid, s,
            cjson.encode({tonumber(st), tonumber(occurred), applied and 1 or 0, ARGV[o]}))
        end
        entry[3] = -1
      end
    end
    local r = {new}
    for _, s in ipairs(seqs) do r[#r + 1] = s end
    results[#results + 1] = r
  end
end
return results
"""
)

# ARGV: P, id. Returns {seq, data} or nil.
GET = (
    _COMMON
    + """
local seq = redis.call('HGET', P .. ':ids', ARGV[2])
if not seq then return nil end
local e = redis.call('XRANGE', STREAM, '0-' .. seq, '0-' .. seq)
if not e[1] then return nil end
return {tonumber(seq), fields(e[1])['d']}
"""
)

# ARGV: P, name, canonical filter, filter empty (1/0), kind, after_sequence, from_time, now,
# max_attempts, expire_after. Returns 1 when created or joined, 0 on a filter conflict.
CREATE_GROUP = (
    _COMMON
    + """
local name = ARGV[2]
local meta = P .. ':group:' .. name
local stored = redis.call('HGET', meta, 'filter')
if stored then
  if ARGV[4] == '0' and stored ~= ARGV[3] then return 0 end
  redis.call('HSET', meta, 'last_active', ARGV[8])
  return 1
end
local pos = start_position(ARGV[5], ARGV[6], ARGV[7])
redis.call('XGROUP', 'CREATE', STREAM, name, sid(pos), 'MKSTREAM')
redis.call('HSET', meta, 'filter', ARGV[3], 'created_at', ARGV[8], 'last_active', ARGV[8],
  'leases', dec(math.floor(tonumber(ARGV[8]) * 1000)), 'max_attempts', ARGV[9],
  'expire_after', ARGV[10])
redis.call('SADD', P .. ':groups', name)
return 1
"""
)

# ARGV: P, name. Returns nil or {filter, created_at, position, pending, head, max_attempts,
# expire_after, last_active, dead letters}.
GROUP_INFO = (
    _COMMON
    + """
local name = ARGV[2]
local k = gkeys(name)
local meta = redis.call('HMGET', k.meta, 'filter', 'created_at', 'max_attempts',
  'expire_after', 'last_active')
if not meta[1] then return nil end
local pos, pending = 0, 0
for _, g in ipairs(redis.call('XINFO', 'GROUPS', STREAM)) do
  local f = {}
  for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
  if f['name'] == name then
    pos, pending = seq_of(f['last-delivered-id']), f['pending']
  end
end
local head = tonumber(redis.call('GET', P .. ':head') or '0')
local dead = redis.call('HLEN', k.dead)
return {meta[1], meta[2], pos, pending - dead, head, meta[3], meta[4], meta[5], dead}
"""
)

# ARGV: P, group, consumer, max_count, now, deadline, max_scan, deadline_passed (the error
# of a dead letter whose last attempt timed out).
# Returns {-1} for an unknown group, else {head, scanned_to, lease, dead, seq, attempt,
# data, ...}: scanned_to is the head, or how far a scan capped at max_scan got (nothing
# after it was considered); lease names this fetch's deliveries; dead counts the due
# entries moved to the dead letters.
FETCH = (
    _COMMON
    + """
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
local f = cjson.decode(filter)
local sets = {}
for _, k in ipairs({'event_types', 'message_types', 'phone_number_ids', 'waba_ids'}) do
  if #f[k] > 0 then
    local s = {}
    for _, v in ipairs(f[k]) do s[tostring(v)] = true end
    sets[k] = s
  end
end
local function matches(e)
  if sets['event_types'] and not sets['event_types'][e['t']] then return false end
  if sets['message_types'] and not (e['m'] and sets['message_types'][e['m']]) then
    return false
  end
  if sets['phone_number_ids'] and not sets['phone_number_ids'][e['p']] then return false end
  if sets['waba_ids'] and not sets['waba_ids'][e['w']] then return false end
  return true
end
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
"""
)

# ARGV: P, group, seq... Returns how many were pending.
ACK = (
    _COMMON
    + """
local group = ARGV[2]
local due = P .. ':due:' .. group
if redis.call('EXISTS', P .. ':group:' .. group) == 0 then return 0 end
local acked = 0
local ids, members, decs = {}, {}, {}
for i = 3, #ARGV do
  local seq = tonumber(ARGV[i])
  ids[#ids + 1] = sid(seq)
  members[#members + 1] = member(seq)
  decs[#decs + 1] = dec(seq)
  if #ids == 1000 or i == #ARGV then
    acked = acked + redis.call('XACK', STREAM, group, unpack(ids))
    redis.call('ZREM', due, unpack(members))
    redis.call('HDEL', P .. ':lease:' .. group, unpack(decs))
    redis.call('HDEL', P .. ':err:' .. group, unpack(decs))
    ids, members, decs = {}, {}, {}
  end
end
return acked
"""
)

# ARGV: P, group, redeliver_at, seq... Returns how many were pending.
NACK = (
    _COMMON
    + """
local group, at = ARGV[2], ARGV[3]
local due = P .. ':due:' .. group
local n = 0
for i = 4, #ARGV do
  local seq = tonumber(ARGV[i])
  local m = member(seq)
  if redis.call('ZSCORE', due, m) then
    redis.call('ZADD', due, at, m)
    redis.call('XCLAIM', STREAM, group, '', 0, sid(seq), 'JUSTID')
    n = n + 1
  end
end
return n
"""
)

# ARGV: P, group, consumer, now, error. Returns how many entries became due earlier.
RELEASE = (
    _COMMON
    + """
local group, consumer, now = ARGV[2], ARGV[3], ARGV[4]
if redis.call('EXISTS', P .. ':group:' .. group) == 0 then return 0 end
local due = P .. ':due:' .. group
local n = 0
local t = tonumber(now)
while true do
  local pel = redis.call('XPENDING', STREAM, group, '-', '+', 1000, consumer)
  if #pel == 0 then break end
  local ids = {}
  for _, p in ipairs(pel) do
    local m = member(seq_of(p[1]))
    local score = redis.call('ZSCORE', due, m)
    if score and tonumber(score) > t then
      redis.call('ZADD', due, now, m)
      redis.call('HSET', P .. ':err:' .. group, dec(seq_of(p[1])), ARGV[5])
      n = n + 1
    end
    ids[#ids + 1] = p[1]
  end
  -- To the consumer '' (JUSTID: no delivery counted), so the consumer can go.
  ids[#ids + 1] = 'JUSTID'
  redis.call('XCLAIM', STREAM, group, '', 0, unpack(ids))
end
redis.call('XGROUP', 'DELCONSUMER', STREAM, group, consumer)
return n
"""
)

# ARGV: P, older_than, limit, idle_ms. Deletes at most limit prunable events (received
# before older_than, at or before every group's position, pending or dead-lettered in
# none), oldest first,
# with their status history. Returns {deleted, more}: more is 1 when the scan stopped at
# the limit. First, with idle_ms >= 0, forgets consumers that hold nothing and were idle
# that long (a replica that died never released its streams' consumers); in the same
# script as the check, since XGROUP DELCONSUMER drops whatever the consumer holds.
PRUNE = (
    _COMMON
    + """
local older_than, limit, idle_ms = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if redis.call('EXISTS', STREAM) == 0 then return {0, 0} end
local bound = tonumber(redis.call('GET', P .. ':head') or '0')
local groups = redis.call('SMEMBERS', P .. ':groups')
if idle_ms >= 0 then
  for _, g in ipairs(groups) do
    for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', STREAM, g)) do
      local cf = {}
      for i = 1, #c, 2 do cf[c[i]] = c[i + 1] end
      if cf['pending'] == 0 and cf['idle'] >= idle_ms then
        redis.call('XGROUP', 'DELCONSUMER', STREAM, g, cf['name'])
      end
    end
  end
end
if #groups > 0 then
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', STREAM)) do
    local gf = {}
    for i = 1, #g, 2 do gf[g[i]] = g[i + 1] end
    bound = math.min(bound, seq_of(gf['last-delivered-id']))
  end
end
local deleted, cursor = 0, '-'
while deleted < limit do
  local entries = redis.call('XRANGE', STREAM, cursor, sid(bound), 'COUNT', 500)
  if #entries == 0 then return {deleted, 0} end
  for _, entry in ipairs(entries) do
    local e = fields(entry)
    -- Received times ascend with sequences (up to clock skew between replicas): the
    -- first event too young ends the scan; a skewed straggler goes in a later round.
    if tonumber(e['r']) >= older_than then return {deleted, 0} end
    local seq = seq_of(entry[1])
    local keep = false
    for _, g in ipairs(groups) do
      if redis.call('ZSCORE', P .. ':due:' .. g, member(seq))
        or redis.call('HEXISTS', P .. ':dead:' .. g, dec(seq)) == 1 then
        keep = true
        break
      end
    end
    if not keep then
      redis.call('XDEL', STREAM, entry[1])
      redis.call('HDEL', P .. ':ids', e['i'])
      if e['s'] then
        local hist = P .. ':sh:' .. e['s']
        redis.call('HDEL', hist, seq)
        if redis.call('HLEN', hist) == 0 then redis.call('DEL', P .. ':st:' .. e['s']) end
      end
      deleted = deleted + 1
      if deleted >= limit then return {deleted, 1} end
    end
    cursor = '(' .. entry[1]
  end
end
return {deleted, 1}
"""
)

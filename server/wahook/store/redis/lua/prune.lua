-- ARGV: P, older_than, limit, idle_ms. Deletes at most limit prunable events (received
-- before older_than, at or before every group's position, pending or dead-lettered in
-- none), oldest first,
-- with their status history. Returns {deleted, more}: more is 1 when the scan stopped at
-- the limit. First, with idle_ms >= 0, forgets consumers that hold nothing and were idle
-- that long (a replica that died never released its streams' consumers); in the same
-- script as the check, since XGROUP DELCONSUMER drops whatever the consumer holds.
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

-- ARGV: P, number of appends, then per append its event count n and n * PER_EVENT values:
-- id, dedupe_key, data, received_at, status message id ('' none), state, occurred_at,
-- recipient_id, errors, then the event's value of each of FILTER_COLUMNS ('=' and the
-- value, '' when it has none: the field is left out).
-- Returns per append {new_count, seq...} or {-1, index} when the id at index is
-- stored for another dedupe key (nothing of that append written).
local HEAD, IDS = P .. ':head', P .. ':ids'
local PER_EVENT = 9 + #FILTER_COLUMNS
local results = {}
local a = 3
for _ = 1, tonumber(ARGV[2]) do
  local n = tonumber(ARGV[a])
  local base = a + 1
  a = base + n * PER_EVENT
  -- Check the whole append before writing any of it.
  local seqs, added, refused, new = {}, {}, nil, 0
  local next_seq = tonumber(redis.call('GET', HEAD) or '0') + 1
  for i = 0, n - 1 do
    local o = base + i * PER_EVENT
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
      local o = base + i * PER_EVENT
      local entry = added[ARGV[o]]
      if entry and entry[3] == o then
        local s = entry[1]
        local f = {'d', ARGV[o + 2], 'i', ARGV[o], 'k', ARGV[o + 1], 'r', ARGV[o + 3]}
        for c, column in ipairs(FILTER_COLUMNS) do
          local v = ARGV[o + 8 + c]
          if v ~= '' then f[#f + 1] = column[2] f[#f + 1] = string.sub(v, 2) end
        end
        local mid = ARGV[o + 4]
        if mid ~= '' then f[#f + 1] = 's' f[#f + 1] = mid end
        redis.call('XADD', STREAM, sid(s), unpack(f))
        redis.call('HSET', IDS, ARGV[o], s)
        if mid ~= '' then
          local st, occurred, rcpt, errs = ARGV[o + 5], ARGV[o + 6], ARGV[o + 7], ARGV[o + 8]
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

-- ARGV: P, name. Returns nil or {filter, created_at, position, pending, head, max_attempts,
-- expire_after, last_active, dead letters}.
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

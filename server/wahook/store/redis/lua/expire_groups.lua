-- ARGV: P, now. Deletes the groups idle past their expire_after; returns their names.
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

-- ARGV: P, now, group... Marks the existing ones active at now.
local now = tonumber(ARGV[2])
for i = 3, #ARGV do
  local meta = P .. ':group:' .. ARGV[i]
  local last = redis.call('HGET', meta, 'last_active')
  if last and tonumber(last) < now then redis.call('HSET', meta, 'last_active', ARGV[2]) end
end
return 0

-- ARGV: P, name, canonical filter, filter empty (1/0), kind, after_sequence, from_time, now,
-- max_attempts, expire_after. Returns 1 when created or joined, 0 on a filter conflict.
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

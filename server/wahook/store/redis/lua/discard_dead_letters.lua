-- ARGV: P, group, all (1/0), seq... Returns -1 for no group, else how many were deleted.
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

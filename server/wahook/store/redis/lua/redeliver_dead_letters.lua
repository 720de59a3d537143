-- ARGV: P, group, all (1/0), seq..., then the last ARGV is not a sequence but now.
-- Returns -1 for no group, else how many became pending again (due at now, delivery
-- count 0: the next delivery is attempt 1).
local g = ARGV[2]
local k = gkeys(g)
if redis.call('EXISTS', k.meta) == 0 then return -1 end
local now = table.remove(ARGV)
local n = 0
for _, s in ipairs(chosen(k)) do
  local seq = tonumber(s)
  redis.call('HDEL', k.dead, s)
  redis.call('XCLAIM', STREAM, g, '', 0, sid(seq), 'RETRYCOUNT', 0, 'JUSTID')
  redis.call('ZADD', k.due, now, member(seq))
  n = n + 1
end
return n

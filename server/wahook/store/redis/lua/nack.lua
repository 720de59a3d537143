-- ARGV: P, group, redeliver_at, seq... Returns how many were pending.
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

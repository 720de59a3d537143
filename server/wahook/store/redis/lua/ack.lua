-- ARGV: P, group, seq... Returns how many were pending.
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

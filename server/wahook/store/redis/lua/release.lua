-- ARGV: P, group, consumer, now, error. Returns how many entries became due earlier.
local group, consumer, now = ARGV[2], ARGV[3], ARGV[4]
if redis.call('EXISTS', P .. ':group:' .. group) == 0 then return 0 end
local due = P .. ':due:' .. group
local n = 0
local t = tonumber(now)
while true do
  local pel = redis.call('XPENDING', STREAM, group, '-', '+', 1000, consumer)
  if #pel == 0 then break end
  local ids = {}
  for _, p in ipairs(pel) do
    local m = member(seq_of(p[1]))
    local score = redis.call('ZSCORE', due, m)
    if score and tonumber(score) > t then
      redis.call('ZADD', due, now, m)
      redis.call('HSET', P .. ':err:' .. group, dec(seq_of(p[1])), ARGV[5])
      n = n + 1
    end
    ids[#ids + 1] = p[1]
  end
  -- To the consumer '' (JUSTID: no delivery counted), so the consumer can go.
  ids[#ids + 1] = 'JUSTID'
  redis.call('XCLAIM', STREAM, group, '', 0, unpack(ids))
end
redis.call('XGROUP', 'DELCONSUMER', STREAM, group, consumer)
return n

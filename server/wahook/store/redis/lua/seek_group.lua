-- ARGV: P, group, kind, after_sequence, from_time, now. Returns -1 for no group, else the
-- new position. Every pending entry goes (XACK: the position re-reads what is after it),
-- and so do the dead letters after the position; those at or before it stay.
local g, now = ARGV[2], ARGV[6]
local k = gkeys(g)
if redis.call('EXISTS', k.meta) == 0 then return -1 end
local pos = start_position(ARGV[3], ARGV[4], ARGV[5])
local start = '-'
while true do
  local pel = redis.call('XPENDING', STREAM, g, start, '+', 1000)
  if #pel == 0 then break end
  local ids = {}
  for _, p in ipairs(pel) do
    local seq = seq_of(p[1])
    if not (p[2] == DEAD and seq <= pos) then
      ids[#ids + 1] = p[1]
      redis.call('HDEL', k.dead, dec(seq))
    end
    start = '(' .. p[1]
  end
  if #ids > 0 then redis.call('XACK', STREAM, g, unpack(ids)) end
end
redis.call('DEL', k.due, k.lease, k.err)
redis.call('XGROUP', 'SETID', STREAM, g, sid(pos))
redis.call('HSET', k.meta, 'last_active', now)
return pos

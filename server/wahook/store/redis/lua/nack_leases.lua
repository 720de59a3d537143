-- ARGV: P, group, redeliver_at, error, (seq, lease)... Returns the sequences nacked. The
-- entries move to the consumer '' (see release.lua).
local g, at, err = ARGV[2], ARGV[3], ARGV[4]
return each_leased(g, 5, function(k, seq, s)
  redis.call('ZADD', k.due, at, member(seq))
  redis.call('XCLAIM', STREAM, g, '', 0, sid(seq), 'JUSTID')
  redis.call('HSET', k.err, s, err)
end)

-- ARGV: P, group, (seq, lease)... Returns the sequences acked.
local g = ARGV[2]
return each_leased(g, 3, function(k, seq, s)
  redis.call('XACK', STREAM, g, sid(seq))
  redis.call('ZREM', k.due, member(seq))
  redis.call('HDEL', k.lease, s)
  redis.call('HDEL', k.err, s)
end)

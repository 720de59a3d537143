-- ARGV: P, group, deadline, (seq, lease)... Returns the sequences changed.
local at = ARGV[3]
return each_leased(ARGV[2], 4, function(k, seq, s)
  redis.call('ZADD', k.due, at, member(seq))
end)

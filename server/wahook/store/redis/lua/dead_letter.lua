-- ARGV: P, group, error, now, (seq, lease)... Returns the sequences dead-lettered.
local g, err, now = ARGV[2], ARGV[3], ARGV[4]
return each_leased(g, 5, function(k, seq, s)
  local p = redis.call('XPENDING', STREAM, g, sid(seq), sid(seq), 1)
  to_dead(g, k, seq, p[1] and p[1][4] or 1, err, now)
end)

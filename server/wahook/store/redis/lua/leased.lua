-- Helpers over ARGV pairs (sequence, lease) from index `first`: calls fn(seq, seq text)
-- on each entry whose current lease is the one named, and returns their sequences.
local function each_leased(g, first, fn)
  local k = gkeys(g)
  local out = {}
  for i = first, #ARGV, 2 do
    local s = ARGV[i]
    if redis.call('HGET', k.lease, s) == ARGV[i + 1] then
      fn(k, tonumber(s), s)
      out[#out + 1] = tonumber(s)
    end
  end
  return out
end

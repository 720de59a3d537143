-- ARGV: P, group, after_sequence, limit. Returns -1 for no group, else
-- {seq, attempts, dead_at, error, data, ...} in sequence order.
local k = gkeys(ARGV[2])
if redis.call('EXISTS', k.meta) == 0 then return -1 end
local after, limit = tonumber(ARGV[3]), tonumber(ARGV[4])
local seqs = {}
for _, s in ipairs(redis.call('HKEYS', k.dead)) do
  if tonumber(s) > after then seqs[#seqs + 1] = tonumber(s) end
end
table.sort(seqs)
local out = {}
for i = 1, math.min(#seqs, limit) do
  local seq = seqs[i]
  local d = cjson.decode(redis.call('HGET', k.dead, dec(seq)))
  local e = redis.call('XRANGE', STREAM, sid(seq), sid(seq))
  if e[1] then
    out[#out + 1] = seq
    out[#out + 1] = d[1]
    out[#out + 1] = d[2]
    out[#out + 1] = d[3]
    out[#out + 1] = fields(e[1])['d']
  end
end
return out

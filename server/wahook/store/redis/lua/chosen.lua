-- The dead letters chosen by ARGV from index 4 (sequences), or all of them with ARGV[3]
-- '1', as sequence texts.
local function chosen(k)
  if ARGV[3] == '1' then return redis.call('HKEYS', k.dead) end
  local out = {}
  for i = 4, #ARGV do
    if redis.call('HEXISTS', k.dead, ARGV[i]) == 1 then out[#out + 1] = ARGV[i] end
  end
  return out
end

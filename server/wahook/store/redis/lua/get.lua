-- ARGV: P, id. Returns {seq, data} or nil.
local seq = redis.call('HGET', P .. ':ids', ARGV[2])
if not seq then return nil end
local e = redis.call('XRANGE', STREAM, '0-' .. seq, '0-' .. seq)
if not e[1] then return nil end
return {tonumber(seq), fields(e[1])['d']}

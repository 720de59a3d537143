-- A consumer group's filter (store.filters' canonical text) as a function of a stream
-- entry's fields: each non-empty set of FILTER_COLUMNS (generated from
-- store.filters.COLUMNS) must hold the entry's field; an entry without the field (an
-- event with no value there) matches no non-empty set.
local function filter_matcher(text)
  local f = cjson.decode(text)
  local sets = {}
  for _, column in ipairs(FILTER_COLUMNS) do
    local values = f[column[1]]
    if #values > 0 then
      local s = {}
      for _, v in ipairs(values) do s[tostring(v)] = true end
      sets[#sets + 1] = {column[2], s}
    end
  end
  return function(e)
    for _, set in ipairs(sets) do
      local v = e[set[1]]
      if v == nil or not set[2][v] then return false end
    end
    return true
  end
end

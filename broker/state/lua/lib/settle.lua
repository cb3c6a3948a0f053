-- Put in front of the scripts that settle a trigger (`util.script`), after kept.lib.

-- Trigger record `k` has settled (its run is over, or was when the target answered):
-- kept for the history window `ms` from now ('' or 0: for good). Of its inputs it keeps
-- which event fed each slot (`input_ids`): the events themselves are what its request
-- was rendered from, and a settled trigger is not sent again (a dead-lettered one, which
-- can be, does not come here). An `inputs` that is not JSON is left as it is.
local function settle(k, ms)
  local raw = redis.call('HGET', k, 'inputs')
  if raw then
    local ok, inputs = pcall(cjson.decode, raw)
    if ok and type(inputs) == 'table' then
      local ids = {}  -- slot, id, slot, id, ... (joined by RS: neither holds one)
      for s, e in pairs(inputs) do
        local id
        if type(e) == 'string' then  -- as its slot keeps it (kept.lib)
          id = select(3, unkept(e))
        elseif type(e) == 'table' and type(e.event_id) == 'string' then  -- whole (earlier)
          id = e.event_id
        end
        if id then ids[#ids + 1] = s .. RS .. id end
      end
      redis.call('HDEL', k, 'inputs')
      if #ids > 0 then redis.call('HSET', k, 'input_ids', table.concat(ids, RS)) end
    end
  end
  local n = tonumber(ms)
  if n and n > 0 then redis.call('PEXPIRE', k, n) end
end

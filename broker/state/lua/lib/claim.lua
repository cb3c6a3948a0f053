-- Shared by the scripts that fire a partition (record, deadline, backfill), and put in
-- front of each by `util.script` (after kept.lib): Redis scripts cannot include each other.

-- The input partition hash `h` holds for slot `s`: a table {order, landed (ms), id,
-- value (the field's text, kept.lib)}, or nil. An input kept in the four fields of an
-- earlier Baton is {order, landed, id, legacy = true}.
local function held(h, s)
  local v = redis.call('HGET', h, 'i:' .. s)
  if v then
    local order, landed, id = unkept(v)
    return {order = order, landed = landed, id = id, value = v}
  end
  local id = redis.call('HGET', h, 'e:' .. s)
  if not id then return nil end
  return {order = redis.call('HGET', h, 'o:' .. s) or '',
    landed = tonumber(redis.call('HGET', h, 'r:' .. s) or '0') or 0, id = id, legacy = true}
end

-- Hold `value` (`kept`) for slot `s`, replacing what `was` held (held's answer, or nil).
local function hold(h, s, value, was)
  redis.call('HSET', h, 'i:' .. s, value)
  if was and was.legacy then redis.call('HDEL', h, 's:' .. s, 'o:' .. s, 'e:' .. s, 'r:' .. s) end
end

-- The trigger record's `inputs` (a JSON object: slot -> the event held, as its slot
-- keeps it) over the `slots` that `counts`, and the slots that do not count (the
-- missing ones).
local function gather(h, slots, counts)
  local parts, missing = {}, {}
  for _, s in ipairs(slots) do
    if counts(s) then
      local input = held(h, s)
      local event = input.legacy and redis.call('HGET', h, 's:' .. s) or cjson.encode(input.value)
      parts[#parts + 1] = cjson.encode(s) .. ':' .. event
    else
      missing[#missing + 1] = s
    end
  end
  return '{' .. table.concat(parts, ',') .. '}', missing
end

-- Whether an operator has paused `contract` (KEYS: the paused hash): nothing fires.
local function paused(key, contract)
  return redis.call('HEXISTS', key, contract) == 1
end

-- A history window in ms, or nil for none ('' or 0, as a test's store asks).
local function window(ms)
  local n = tonumber(ms)
  if n and n > 0 then return n end
  return nil
end

-- Keep key `k` for the window `ms` from now.
local function keep(k, ms)
  if window(ms) then redis.call('PEXPIRE', k, ms) end
end

-- Note in the contract's fired-markers that `partition` fired generation `gen` at `now_ms`.
local function mark(markers, partition, gen, now_ms)
  redis.call('HSET', markers, partition, gen .. ':' .. now_ms)
end

-- A partition hash `h` that is gone (past its history window) of a partition that fired
-- (its fired-marker in `markers`): put back what the marker knows, the last generation
-- fired, so that what comes now is a restatement of it and never fires an id again.
-- Unpartitioned ('u'), the next generation is the one after. Returns whether it did.
local function restore(h, markers, partition, mode, history_ms)
  if redis.call('EXISTS', h) == 1 then return false end
  local marker = redis.call('HGET', markers, partition)
  if not marker then return false end
  local last = tonumber(string.match(marker, '^%d+'))
  redis.call('HSET', h, 'gen', mode == 'u' and last + 1 or last, 'fired', last,
    'expired', marker)
  keep(h, history_ms)
  return true
end

-- Fire generation f.gen of partition hash f.h as trigger f.tid: mark the partition (and
-- the event that fired it, f.by, when one did) and its fired-marker, write the trigger
-- record (and the `extra` field, value pairs), queue it for the dispatchers, list it as
-- recent (dropping what is past the history window) and count it as fired by f.cause.
local function claim(f, extra)
  -- The trigger's id is the partition's base and `fired` (state/redis_store.py:
  -- fired_trigger); an earlier Baton kept it as `trigger`, and a firing skipped (a
  -- contract resumed unfired) is marked `skipped`.
  if f.by then
    redis.call('HSET', f.h, 'fired', f.gen, 'fired_by', f.by)
  else
    redis.call('HSET', f.h, 'fired', f.gen)
  end
  redis.call('HDEL', f.h, 'trigger', 'skipped')
  keep(f.h, f.history_ms)
  mark(f.markers, f.partition, f.gen, f.now_ms)
  -- Its id is its key's, and says its contract, partition and generation (state/ports.py
  -- reads them from it), but for a partition named `_`, the id's name for none; times
  -- are epoch ms (read as ISO).
  local record = {'state', 'pending', 'attempts', 0, 'created_at', f.now_ms,
    'updated_at', f.now_ms, 'inputs', f.inputs, 'contract_version', f.version}
  if f.partition == '_' then
    record[#record + 1] = 'partition'
    record[#record + 1] = '_'
  end
  for _, v in ipairs(extra) do record[#record + 1] = v end
  redis.call('HSET', f.prefix .. f.tid, unpack(record))
  redis.call('XADD', f.triggers, '*', 't', f.tid)
  local history = window(f.history_ms)
  if history then
    redis.call('XADD', f.recent, 'MINID', tonumber(f.now_ms) - history, '*', 't', f.tid)
  else
    redis.call('XADD', f.recent, '*', 't', f.tid)
  end
  redis.call('HINCRBY', f.stats, 'fired:' .. f.cause, 1)
end


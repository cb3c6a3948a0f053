-- Record one event as an input of one contract partition, decide, and claim the firing.
-- Read, decide and write happen in this one script, so two workers can never both fire
-- the same (contract, partition, generation): the first to run claims it.
--
-- Cases, in order:
--   1. failed event      -> kept under f:<slot> for explain; never satisfies
--   2. same event_id     -> duplicate, nothing changes
--   3. older than latest -> stale (a late or redelivered event), nothing changes
--   3b. this event already fired the partition through another of its slots (one dataset
--       read under two filters: one call per slot) -> recorded, part of that firing
--   4. partition already fired this generation:
--      4a. first event for this slot -> recorded, no new generation (not a restatement)
--      4b. policy ignore             -> recorded, nothing fires
--      4c. policy retrigger          -> next generation, evaluated below
--   5. record, evaluate the condition tree, and claim the firing if it holds
--   5b. the contract is paused: recorded, nothing fires (resuming evaluates it again)
--   6. with a consumer name given, deliver the oldest undelivered trigger entry to it
--      in this same call (usually the one just claimed), so the claiming worker can
--      dispatch at once; the entry sits in its pending list like any XREADGROUP read
-- Unpartitioned contracts (mode 'u') count only inputs not consumed by the last trigger.
-- A partition whose hash expired after it fired is first put back from its fired-marker
-- (claim.lib `restore`): then any event for it is a restatement (4b/4c), even the first
-- for its slot, and the generation goes on from the marker's.
-- Every write keeps the partition hash for the history window from now.
--
-- KEYS[1] partition hash, KEYS[2] triggers stream, KEYS[3] recent-triggers zset,
-- KEYS[4] counters hash, KEYS[5] paused contracts hash, KEYS[6] the contract's
-- fired-markers hash
-- ARGV: 1 mode (p|u), 2 slot, 3 event json, 4 event_id, 5 order key, 6 status,
--       7 policy, 8 condition tree json, 9 trigger id base, 10 now iso,
--       11 trigger key prefix, 12 contract, 13 partition, 14 contract version, 15 now ms,
--       16 dispatcher group, 17 consumer to deliver to ('' = none),
--       18 when the event landed (ms), 19 the contract's `within` window (ms, 0 = none),
--       20 '1' to record only (replay): no restatement, no evaluation, nothing fires
--       21 '1' to re-evaluate (the contract changed): an event already held, or older
--          than the one held, is not an answer but a reason to evaluate the partition
--          again under the new condition; a partition that fired is never restated
--       22 '1' (with 21) to skip: a partition that holds is marked done without firing
--          (a contract resumed with `fire: false`)
--       23 the history window (ms; '' = none): how long the partition hash is kept
-- With a `within` window, an input counts only if it landed no more than the window
-- before the event being recorded (each slot keeps its landing time: state/held.py).
-- ARGV[3] is the rest of the event, as the slot keeps it (state/held.py).
-- Returns {outcome, trigger_id, generation, delivered entry id, delivered trigger id, inputs}
local h, slot, mode = KEYS[1], ARGV[2], ARGV[1]
local history = ARGV[23] or ''
local restored = restore(h, KEYS[6], ARGV[13], mode, history)

local value = kept(ARGV[5], ARGV[18] or '0', ARGV[4], ARGV[3])
if ARGV[6] == 'failed' then
  redis.call('HSET', h, 'f:' .. slot, value)
  keep(h, history)
  return {'failed', '', -1}
end
local reeval = ARGV[21] == '1'
local cur = held(h, slot)
local cur_id = cur and cur.id
local kept = false  -- re-evaluating with this slot's input as it stands
if cur_id == ARGV[4] then
  if not reeval then return {'duplicate', '', -1} end
  kept = true
end
if not kept and cur and not later(ARGV[5], cur.order) then
  if not reeval then return {'stale', '', -1} end
  kept = true
end

local function write()
  hold(h, slot, value, cur)
  keep(h, history)
end
local function record()
  if kept then return end
  write()
  if mode == 'u' then redis.call('HDEL', h, 'c:' .. slot) end
end

local gen = tonumber(redis.call('HGET', h, 'gen') or '0')
local fired = tonumber(redis.call('HGET', h, 'fired') or '-1')
if redis.call('HGET', h, 'fired_by') == ARGV[4] then
  -- Not a restatement, and (unpartitioned) consumed by that firing: one event, one trigger.
  if not kept then write() end
  return {'recorded', '', gen}
end
if ARGV[20] == '1' then
  record()
  return {'recorded', '', gen}
end
if mode == 'p' and fired >= gen then
  record()
  if reeval or (not cur_id and not restored) then return {'recorded', '', gen} end
  if ARGV[7] == 'ignore' then return {'ignored', '', gen} end
  gen = gen + 1
  redis.call('HSET', h, 'gen', gen)
else
  record()
end

local within = tonumber(ARGV[19] or '0') or 0
local oldest = (tonumber(ARGV[18] or '0') or 0) - within
local tree = cjson.decode(ARGV[8])
if reeval and within > 0 then
  -- Not recorded just now: the newest input that landed is the reference, as it was
  -- when that input was recorded.
  local newest = 0
  local function scan(node)
    if node.s then
      local input = held(h, node.s)
      if input then newest = math.max(newest, input.landed) end
      return
    end
    for _, c in ipairs(node.all or node.any) do scan(c) end
  end
  scan(tree)
  oldest = newest - within
end
local function satisfied(s)
  local input = held(h, s)
  if not input then return false end
  if within > 0 and input.landed < oldest then
    return false  -- landed too long before the others: outside the window
  end
  return mode ~= 'u' or redis.call('HEXISTS', h, 'c:' .. s) == 0
end
local function holds(node)
  if node.s then return satisfied(node.s) end
  if node.all then
    for _, c in ipairs(node.all) do if not holds(c) then return false end end
    return true
  end
  for _, c in ipairs(node.any) do if holds(c) then return true end end
  return false
end
if not holds(tree) then return {'recorded', '', gen} end
local skip = ARGV[22] == '1'
if not skip and paused(KEYS[5], ARGV[12]) then return {'paused', '', gen} end

-- Claim: the inputs that stand now, the trigger record and the dispatch entry.
local slots = {}
local function collect(node)
  if node.s then slots[#slots + 1] = node.s return end
  for _, c in ipairs(node.all or node.any) do collect(c) end
end
collect(tree)
-- The inputs the trigger reads, gathered before an unpartitioned contract marks them
-- consumed (a consumed input no longer counts as satisfied).
local inputs = skip and '' or gather(h, slots, satisfied)
if mode == 'u' then
  for _, s in ipairs(slots) do redis.call('HSET', h, 'c:' .. s, '1') end
  redis.call('HSET', h, 'gen', gen + 1)
end
if skip then
  -- Resumed without firing: what completed while paused counts as done, unfired.
  if mode == 'p' then
    redis.call('HSET', h, 'fired', gen, 'skipped', ARGV[10])
    redis.call('HDEL', h, 'trigger')
    mark(KEYS[6], ARGV[13], gen, ARGV[15])
  end
  return {'skipped', '', gen}
end
local tid = ARGV[9] .. gen
claim({h = h, tid = tid, gen = gen, by = ARGV[4], contract = ARGV[12], partition = ARGV[13], now = ARGV[10],
  now_ms = ARGV[15], version = ARGV[14], inputs = inputs, prefix = ARGV[11],
  triggers = KEYS[2], recent = KEYS[3], stats = KEYS[4], markers = KEYS[6],
  history_ms = history, cause = reeval and 'reevaluation' or 'event'}, {})
if ARGV[17] == '' then return {'fired', tid, gen} end
local read = redis.call('XREADGROUP', 'GROUP', ARGV[16], ARGV[17], 'COUNT', 1,
  'STREAMS', KEYS[2], '>')
local entry = read[1][2][1]
local delivered = entry[2][2]
if delivered == tid then
  -- The claimer dispatches it now: count that attempt here, saving a round trip.
  redis.call('HSET', ARGV[11] .. tid, 'state', 'dispatching', 'attempts', 1)
end
return {'fired', tid, gen, entry[1], delivered, inputs}

-- One step of a backfill: fire, or skip, the partition at position `pos` of its plan,
-- and advance, all at once. A crash before this script changes nothing; after it, the
-- position has moved on, so a resumed backfill never fires a partition twice. A
-- partition that fired meanwhile (live) is skipped, unless this is a forced rerun,
-- which starts the next generation (a new, still deterministic, trigger id).
--
-- KEYS[1] backfill hash, KEYS[2] partition hash, KEYS[3] triggers stream,
-- KEYS[4] recent-triggers zset, KEYS[5] backfill in-flight set, KEYS[6] counters hash,
-- KEYS[7] paused contracts hash (a paused contract's backfill waits where it is),
-- KEYS[8] the contract's fired-markers hash (a partition that fired and expired since
-- is put back from it: it ran, and a rerun is its next generation)
-- ARGV: 1 expected pos, 2 partition, 3 mode (fire|rerun|skip), 4 slots json,
--       5 trigger id base, 6 trigger key prefix, 7 contract, 8 contract version,
--       9 now iso, 10 now ms, 11 skip reason, 12 backfill id, 13 history window ms
-- Returns {'fired', trigger id} | {'skipped', reason} | {'moved', ''} | {'paused', ''}
local b, h = KEYS[1], KEYS[2]
local pos = tonumber(redis.call('HGET', b, 'pos') or '0')
if pos ~= tonumber(ARGV[1]) then return {'moved', ''} end
if paused(KEYS[7], ARGV[7]) then
  redis.call('HSET', b, 'waiting', 'the contract is paused')
  return {'paused', ''}
end
redis.call('HDEL', b, 'waiting')

local function skip(reason)
  redis.call('HSET', b, 'pos', pos + 1, 'skip:' .. ARGV[2], reason)
  redis.call('HINCRBY', b, 'skipped', 1)
  return {'skipped', reason}
end
if ARGV[3] == 'skip' then return skip(ARGV[11]) end

restore(h, KEYS[8], ARGV[2], 'p', ARGV[13])
local gen = tonumber(redis.call('HGET', h, 'gen') or '0')
local fired = tonumber(redis.call('HGET', h, 'fired') or '-1')
if fired >= gen then
  if ARGV[3] ~= 'rerun' then
    return skip('already ran as ' .. (redis.call('HGET', h, 'trigger') or ARGV[5] .. fired))
  end
  gen = gen + 1
  redis.call('HSET', h, 'gen', gen)
end
local inputs, missing = gather(h, cjson.decode(ARGV[4]),
  function(s) return held(h, s) ~= nil end)
local tid = ARGV[5] .. gen
claim({h = h, tid = tid, gen = gen, contract = ARGV[7], partition = ARGV[2], now = ARGV[9],
  now_ms = ARGV[10], version = ARGV[8], inputs = inputs, prefix = ARGV[6],
  triggers = KEYS[3], recent = KEYS[4], stats = KEYS[6], markers = KEYS[8],
  history_ms = ARGV[13], cause = 'backfill'},
  {'missing', cjson.encode(missing), 'backfill', ARGV[12]})
redis.call('SADD', KEYS[5], tid)
redis.call('HSET', b, 'pos', pos + 1, 'run:' .. ARGV[2], tid)
redis.call('HINCRBY', b, 'fired', 1)
return {'fired', tid}

-- A watched (contract, partition) whose deadline has come: decide, once, what happens.
-- The first worker to take the member off the clock decides; the others see it gone.
-- An alert is queued on the alerts stream (sent by the alerters group, so a crash after
-- this script loses nothing) at most once per member, ever. With on_deadline: trigger
-- the partition is also claimed and fired with the inputs that are there, exactly as
-- record.lua claims a firing, the missing inputs named on the trigger record.
--
-- KEYS[1] deadlines zset, KEYS[2] partition hash, KEYS[3] alerted hash, KEYS[4] alerts
-- stream, KEYS[5] triggers stream, KEYS[6] recent-triggers zset, KEYS[7] counters hash,
-- KEYS[8] paused contracts hash (a paused contract's deadline alerts, and fires nothing),
-- KEYS[9] the contract's fired-markers hash (fired, and expired since: met)
-- ARGV: 1 member, 2 contract, 3 partition, 4 deadline iso, 5 now iso, 6 alerts kept,
--       7 on_deadline (alert|trigger), 8 slots json, 9 trigger id base,
--       10 trigger key prefix, 11 contract version, 12 now ms, 13 history window ms
-- Returns {'taken'|'met'|'already'|'alert'|'forced', trigger id or ''}
local h = KEYS[2]
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then
  return {'taken', ''}
end
restore(h, KEYS[9], ARGV[3], 'p', ARGV[13])
if tonumber(redis.call('HGET', h, 'fired') or '-1') >= 0 then
  return {'met', ''}  -- fired before its deadline (a restatement waiting since is no miss)
end
local gen = tonumber(redis.call('HGET', h, 'gen') or '0')
if redis.call('HSETNX', KEYS[3], ARGV[1], cjson.encode({alerted_at = ARGV[5],
    deadline = ARGV[4]})) == 0 then
  return {'already', ''}
end
local kind, tid = 'deadline_missed', ''
if ARGV[7] == 'trigger' and not paused(KEYS[8], ARGV[2]) then
  local inputs, missing = gather(h, cjson.decode(ARGV[8]),
    function(s) return held(h, s) ~= nil end)
  tid = ARGV[9] .. gen
  claim({h = h, tid = tid, gen = gen, contract = ARGV[2], partition = ARGV[3], now = ARGV[5],
    now_ms = ARGV[12], version = ARGV[11], inputs = inputs, prefix = ARGV[10],
    triggers = KEYS[5], recent = KEYS[6], stats = KEYS[7], markers = KEYS[9],
    history_ms = ARGV[13], cause = 'deadline'},
    {'missing', cjson.encode(missing)})
  kind = 'deadline_forced'
end
redis.call('HINCRBY', KEYS[7], 'alerts:' .. kind, 1)
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[6], '*', 'kind', kind,
  'contract', ARGV[2], 'partition', ARGV[3], 'deadline', ARGV[4], 'at', ARGV[5],
  'trigger_id', tid)
if tid ~= '' then return {'forced', tid} end
return {'alert', ''}

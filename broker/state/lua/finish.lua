-- Record a dispatch outcome on the trigger and ack its stream entry, in one step.
-- KEYS[1] trigger record, KEYS[2] triggers stream, KEYS[3] retries zset (or, for a
-- trigger that waits for its target, the target's waiting zset), KEYS[4] dead-letter
-- stream, KEYS[5] run-tracking zset, KEYS[6] counters hash,
-- KEYS[7] (optional) a target's running zset the trigger leaves, KEYS[8] (optional) a
-- target's waiting zset it leaves
-- ARGV: 1 dispatcher group, 2 entry id ('' = none: not read from the stream),
--       3 trigger id, 4 now iso, 5 due ms for KEYS[3] ('' = none),
--       6 dead-letter error ('' = none), 7 first run look ms ('' = none),
--       8 the history window ms ('' = none), 9 now ms,
--       10 '1' when the trigger settles here (its run was over when answered),
--       11.. field, value pairs for the record
-- A dead-lettered trigger has settled: its record is kept for the history window, and
-- dead letters older than that window are trimmed as this one is added (exactly: the
-- stream is small, and `baton dlq` should not list a letter whose record is gone). The acked
-- stream entry is deleted: it has been handed on, and the record says the rest. One that
-- settles here (a webhook's) is settled as settle.lib says.
local fields = {'updated_at', ARGV[9]}
for i = 11, #ARGV do fields[#fields + 1] = ARGV[i] end
for i = 11, #ARGV - 1, 2 do
  if ARGV[i] == 'state' then redis.call('HINCRBY', KEYS[6], 'dispatch:' .. ARGV[i + 1], 1) end
end
redis.call('HSET', KEYS[1], unpack(fields))
if ARGV[5] ~= '' then
  redis.call('ZADD', KEYS[3], ARGV[5], ARGV[3])
end
if ARGV[7] ~= '' then
  redis.call('ZADD', KEYS[5], ARGV[7], ARGV[3])
end
local history = tonumber(ARGV[8] ~= '' and ARGV[8] or '0')
if ARGV[6] ~= '' then
  if history > 0 then
    redis.call('XADD', KEYS[4], 'MINID', tonumber(ARGV[9]) - history, '*',
      'trigger_id', ARGV[3], 'error', ARGV[6], 'at', ARGV[4])
    redis.call('PEXPIRE', KEYS[1], history)
  else
    redis.call('XADD', KEYS[4], '*', 'trigger_id', ARGV[3], 'error', ARGV[6], 'at', ARGV[4])
  end
elseif ARGV[10] == '1' then
  settle(KEYS[1], history)
end
if KEYS[7] then redis.call('ZREM', KEYS[7], ARGV[3]) end
if KEYS[8] then redis.call('ZREM', KEYS[8], ARGV[3]) end
if ARGV[2] == '' then return 0 end
local acked = redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[2], ARGV[2])
return acked

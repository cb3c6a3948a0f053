-- A followed run has ended: record where it stands and settle the trigger (settle.lib),
-- leaving the tracking zset and the target's runs in flight, in one step.
-- KEYS[1] trigger record, KEYS[2] the target's tracking zset, KEYS[3] (optional) the
-- target's running zset
-- ARGV: 1 trigger id, 2 the history window ms ('' = none), 3.. field, value pairs
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('HINCRBY', KEYS[1], 'run_checks', 1)
settle(KEYS[1], ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[1])
if KEYS[3] then redis.call('ZREM', KEYS[3], ARGV[1]) end
return 1

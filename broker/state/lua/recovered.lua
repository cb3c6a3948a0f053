-- A watched (contract, partition) fired: take it off the deadline clock, and if its
-- deadline alert went out, queue one "recovered" note (once).
--
-- KEYS[1] deadlines zset, KEYS[2] alerted hash, KEYS[3] alerts stream
-- ARGV: 1 member, 2 contract, 3 partition, 4 trigger id, 5 now iso, 6 alerts kept
-- Returns 'recovered' when a note was queued, else ''
redis.call('ZREM', KEYS[1], ARGV[1])
local sent = redis.call('HGET', KEYS[2], ARGV[1])
if not sent then return '' end
local alert = cjson.decode(sent)
if alert.recovered_at then return '' end
alert.recovered_at = ARGV[5]
alert.trigger_id = ARGV[4]
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(alert))
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[6], '*', 'kind', 'deadline_recovered',
  'contract', ARGV[2], 'partition', ARGV[3], 'deadline', alert.deadline, 'at', ARGV[5],
  'trigger_id', ARGV[4])
return 'recovered'

-- A watched (contract, partition) whose deadline has come: decide, once, whether it
-- alerts. The first worker to take the member off the clock decides; the others see
-- it gone. An alert is queued on the alerts stream (sent by the alerters group, so a
-- crash after this script loses nothing) at most once per member, ever.
--
-- KEYS[1] deadlines zset, KEYS[2] partition hash, KEYS[3] alerted hash, KEYS[4] alerts stream
-- ARGV: 1 member, 2 contract, 3 partition, 4 deadline iso, 5 now iso, 6 alerts kept
-- Returns 'taken' (another worker had it), 'met' (fired in time), 'already' or 'alert'
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then
  return 'taken'
end
if tonumber(redis.call('HGET', KEYS[2], 'fired') or '-1') >= 0 then
  return 'met'
end
if redis.call('HSETNX', KEYS[3], ARGV[1], cjson.encode({alerted_at = ARGV[5],
    deadline = ARGV[4]})) == 0 then
  return 'already'
end
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[6], '*', 'kind', 'deadline_missed',
  'contract', ARGV[2], 'partition', ARGV[3], 'deadline', ARGV[4], 'at', ARGV[5])
return 'alert'

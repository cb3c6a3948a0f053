-- Start a dispatch attempt, unless the trigger is already done or unknown.
-- KEYS[1] trigger record; ARGV[1] now (epoch ms)
-- Returns the record as a flat HGETALL list after counting the attempt, or {} when
-- there is nothing to do (missing, succeeded or failed).
local state = redis.call('HGET', KEYS[1], 'state')
if not state or state == 'succeeded' or state == 'failed' then
  return {}
end
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'state', 'dispatching', 'updated_at', ARGV[1])
return redis.call('HGETALL', KEYS[1])

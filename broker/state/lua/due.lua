-- Move triggers whose retry time has come back onto the triggers stream, atomically.
-- KEYS[1] retries zset, KEYS[2] triggers stream; ARGV[1] now (ms), ARGV[2] max count
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, tid in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', 't', tid)
  redis.call('ZREM', KEYS[1], tid)
end
return #due

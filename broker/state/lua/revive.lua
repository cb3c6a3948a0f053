-- Bring a dead-lettered trigger back for dispatch, with a fresh attempt budget.
-- The trigger keeps its id, so the target still deduplicates a run it already started.
-- Its record, kept for the history window once it failed, is live again: kept for good.
-- KEYS[1] trigger record, KEYS[2] triggers stream, KEYS[3] dead-letter stream
-- ARGV[1] trigger id, ARGV[2] now (epoch ms), ARGV[3..] dead-letter entry ids of this trigger
-- Returns 1 if revived, 0 if the trigger is unknown or not failed.
if redis.call('HGET', KEYS[1], 'state') ~= 'failed' then
  return 0
end
redis.call('HSET', KEYS[1], 'state', 'pending', 'attempts', 0, 'updated_at', ARGV[2])
redis.call('PERSIST', KEYS[1])
redis.call('XADD', KEYS[2], '*', 't', ARGV[1])
for i = 3, #ARGV do
  redis.call('XDEL', KEYS[3], ARGV[i])
end
return 1

-- Record what a call to a target showed about it, for its circuit breaker.
--   answered (a success, or a permanent refusal: it is up) -> closed, failures 0
--   failed (transient), while half open (the probe failed) -> open again, cooldown doubled
--   failed, closed, `threshold` failures in a row          -> open for the first cooldown
--   failed otherwise                                       -> counted
-- With a trigger id given, its in-flight slot is freed too (the attempt is over
-- without a run).
-- KEYS[1] breaker hash, KEYS[2] running zset
-- ARGV: 1 'answered'|'failed', 2 now ms, 3 threshold (0 = no breaker), 4 first cooldown
--       ms, 5 max cooldown ms, 6 trigger id to free ('' = none)
-- Returns the breaker's state after: 'closed' | 'open'
if ARGV[6] ~= '' then redis.call('ZREM', KEYS[2], ARGV[6]) end
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if ARGV[1] == 'answered' then
  if state ~= 'closed' or redis.call('HGET', KEYS[1], 'failures') then
    redis.call('DEL', KEYS[1])
  end
  return 'closed'
end
local threshold = tonumber(ARGV[3])
if threshold == 0 then return 'closed' end
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
local now = tonumber(ARGV[2])
if state == 'half_open' then
  local cooldown = math.min(tonumber(ARGV[5]),
    2 * tonumber(redis.call('HGET', KEYS[1], 'cooldown') or ARGV[4]))
  redis.call('HSET', KEYS[1], 'state', 'open', 'until', now + cooldown, 'cooldown', cooldown)
  redis.call('HDEL', KEYS[1], 'probe', 'probe_at')
  return 'open'
end
if state == 'closed' and failures >= threshold then
  redis.call('HSET', KEYS[1], 'state', 'open', 'until', now + tonumber(ARGV[4]),
    'cooldown', ARGV[4], 'opened_at', now)
  return 'open'
end
return state == 'open' and 'open' or 'closed'

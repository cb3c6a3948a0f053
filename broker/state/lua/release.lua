-- Let waiting triggers go to their target, oldest first, as far as its limits and its
-- circuit breaker allow: each is admitted (in flight) and put back on the triggers
-- stream in one step, so it is dispatched exactly once. Run by every dispatching
-- worker each round; the script makes two of them at once harmless.
--
-- Cases:
--   1. nobody waits                                -> nothing
--   2. breaker open, cooldown running, or a probe out -> nothing
--   3. breaker open, cooldown over                 -> the oldest goes, as the probe
--   4. breaker closed                              -> the oldest go, up to the free
--                                                     in-flight slots, the start rate
--                                                     and `max count`
-- KEYS[1] running zset, KEYS[2] waiting zset, KEYS[3] rate key, KEYS[4] breaker hash,
-- KEYS[5] triggers stream
-- ARGV: 1 now ms, 2 max in flight (0 = none), 3 ms between starts (0 = none), 4 burst,
--       5 max count, 6 trigger key prefix, 7 probe timeout ms
-- Returns the trigger ids released
local now, count = tonumber(ARGV[1]), tonumber(ARGV[5])
if redis.call('ZCARD', KEYS[2]) == 0 then return {} end
local state = redis.call('HGET', KEYS[4], 'state') or 'closed'
if state ~= 'closed' then
  if now < tonumber(redis.call('HGET', KEYS[4], 'until') or '0') then return {} end
  local out_at = tonumber(redis.call('HGET', KEYS[4], 'probe_at') or '0')
  if state == 'half_open' and now - out_at < tonumber(ARGV[7]) then return {} end
  count = 1
end
local limit, interval = tonumber(ARGV[2]), tonumber(ARGV[3])
local released = {}
while #released < count do
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  if not oldest then break end
  if limit > 0 and redis.call('ZCARD', KEYS[1]) >= limit then break end
  if interval > 0 then
    local tat = math.max(tonumber(redis.call('GET', KEYS[3]) or '0'), now)
    if tat - now > interval * (tonumber(ARGV[4]) - 1) then break end
    redis.call('SET', KEYS[3], tat + interval, 'PX', tat + interval - now + 1000)
  end
  redis.call('ZREM', KEYS[2], oldest)
  redis.call('ZADD', KEYS[1], now, oldest)
  redis.call('HSET', ARGV[6] .. oldest, 'state', 'pending', 'waiting_for', '')
  redis.call('XADD', KEYS[5], '*', 't', oldest)
  released[#released + 1] = oldest
end
if state ~= 'closed' and #released > 0 then
  redis.call('HSET', KEYS[4], 'state', 'half_open', 'probe', released[1], 'probe_at', now)
end
return released

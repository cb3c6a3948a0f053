-- May this trigger call its target now? The gate in front of a target with a limit,
-- or whose circuit breaker is not closed; atomic, so several workers never exceed a
-- limit or send more than one probe.
--
-- Cases, in order:
--   1. already admitted (a redelivery, or released from waiting)  -> go
--   2. breaker open, cooldown running                             -> wait ('breaker')
--      a probe is out (and not older than the probe timeout)      -> wait ('breaker')
--      triggers are waiting: the oldest goes as the probe         -> wait ('breaker')
--      none waiting: this one goes as the probe (half open)       -> go
--   3. others are waiting for this target already                 -> wait behind them
--   4. `max_in_flight` runs in flight                              -> wait ('in_flight')
--   5. the start rate is used up (GCRA)                           -> wait ('rate')
--   6. otherwise                                                  -> go: in flight
-- Waiting undoes the attempt `begin` counted, marks the record `waiting`, adds it to
-- the waiting set by creation time (age order) and acks its stream entry; the release
-- script puts it back on the stream, already admitted, when its turn comes.
--
-- KEYS[1] running zset, KEYS[2] waiting zset, KEYS[3] rate key, KEYS[4] breaker hash,
-- KEYS[5] trigger record, KEYS[6] triggers stream
-- ARGV: 1 trigger id, 2 now ms, 3 created ms, 4 max in flight (0 = none),
--       5 ms between starts (0 = none), 6 burst, 7 entry id, 8 dispatcher group,
--       9 target name, 10 probe timeout ms
-- Returns {'go'|'wait', reason}
local tid, now = ARGV[1], tonumber(ARGV[2])
if redis.call('ZSCORE', KEYS[1], tid) then return {'go', 'admitted'} end

local function wait(reason)
  redis.call('ZADD', KEYS[2], 'NX', ARGV[3], tid)
  redis.call('HINCRBY', KEYS[5], 'attempts', -1)
  redis.call('HSET', KEYS[5], 'state', 'waiting', 'waiting_for', reason, 'target', ARGV[9])
  redis.call('XACK', KEYS[6], ARGV[8], ARGV[7])
  return {'wait', reason}
end

local waiting = redis.call('ZCARD', KEYS[2])
local state = redis.call('HGET', KEYS[4], 'state') or 'closed'
local probe = false
if state ~= 'closed' then
  if now < tonumber(redis.call('HGET', KEYS[4], 'until') or '0') then return wait('breaker') end
  local out_at = tonumber(redis.call('HGET', KEYS[4], 'probe_at') or '0')
  if state == 'half_open' and now - out_at < tonumber(ARGV[10]) then return wait('breaker') end
  if waiting > 0 then return wait('breaker') end
  probe = true
elseif waiting > 0 then
  return wait('queue')
end
local limit = tonumber(ARGV[4])
if limit > 0 and redis.call('ZCARD', KEYS[1]) >= limit then return wait('in_flight') end
local interval = tonumber(ARGV[5])
if interval > 0 then
  local tat = math.max(tonumber(redis.call('GET', KEYS[3]) or '0'), now)
  if tat - now > interval * (tonumber(ARGV[6]) - 1) then return wait('rate') end
  redis.call('SET', KEYS[3], tat + interval, 'PX', tat + interval - now + 1000)
end
if probe then
  redis.call('HSET', KEYS[4], 'state', 'half_open', 'probe', tid, 'probe_at', now)
end
redis.call('ZADD', KEYS[1], now, tid)
redis.call('HSET', KEYS[5], 'target', ARGV[9])
return {'go', probe and 'probe' or 'admitted'}

-- Lease the dispatched triggers whose run is due for a look, so that of several
-- workers only one looks at each: a leased id is pushed `lease` ms into the future and
-- the worker that took it sets the real next time (or removes it) when done.
-- KEYS[1] a target's tracking zset; ARGV[1] now ms, ARGV[2] lease ms, ARGV[3] max count
-- Returns {leased ids, when the next run is due after them (ms; '' = none tracked)}.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local until_ms = tonumber(ARGV[1]) + tonumber(ARGV[2])
for _, tid in ipairs(due) do
  redis.call('ZADD', KEYS[1], until_ms, tid)
end
local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {due, head[2] or ''}

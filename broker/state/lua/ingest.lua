-- Accept a batch of events into the events stream, atomically and idempotently.
-- KEYS[1] events stream, KEYS[2] backlog counter
-- ARGV[1] backlog limit, ARGV[2] dedup TTL (s), ARGV[3] dedup key prefix,
-- ARGV[4..] pairs of (event_id, payload)
-- Returns {backlog_full(0|1), backlog, flag per event (1 accepted, 0 duplicate)}
local limit = tonumber(ARGV[1])
local backlog = tonumber(redis.call('GET', KEYS[2]) or '0')
local n = (#ARGV - 3) / 2
if backlog + n > limit then
  return {1, backlog}
end
local out = {0, backlog}
local accepted = 0
for i = 0, n - 1 do
  local id = ARGV[4 + 2 * i]
  local payload = ARGV[5 + 2 * i]
  if redis.call('SET', ARGV[3] .. id, '1', 'NX', 'EX', ARGV[2]) then
    redis.call('XADD', KEYS[1], '*', 'e', payload)
    accepted = accepted + 1
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
if accepted > 0 then
  redis.call('INCRBY', KEYS[2], accepted)
end
return out

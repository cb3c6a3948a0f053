-- Accept a batch of events into the events stream, atomically and idempotently.
-- KEYS[1] events stream, KEYS[2] backlog counter, KEYS[3] counters hash
-- ARGV[1] backlog limit, ARGV[2] dedup TTL (s), ARGV[3] dedup key prefix,
-- ARGV[4] event ids joined by "\n", ARGV[5] payloads joined by "\n", ARGV[6] count,
-- ARGV[7] the prefix of the dedup keys an earlier Baton named by the id itself
-- (state/keys.py); a dedup key is named by the first 20 hex digits of the id's SHA-1
-- (one argument each instead of two per event: encoding thousands of arguments costs
-- the client more than the whole script costs Redis; ids are printable and payloads
-- are JSON, so neither holds a raw newline)
-- Returns {backlog_full(0|1), backlog, per event: its new entry id, or 0 for a duplicate}
local limit = tonumber(ARGV[1])
local n = tonumber(ARGV[6])
local backlog = tonumber(redis.call('GET', KEYS[2]) or '0')
if backlog + n > limit then
  return {1, backlog}
end
local function split(text)
  local parts, pos = {}, 1
  while true do
    local at = string.find(text, '\n', pos, true)
    if not at then
      parts[#parts + 1] = string.sub(text, pos)
      return parts
    end
    parts[#parts + 1] = string.sub(text, pos, at - 1)
    pos = at + 1
  end
end
local ids, payloads = split(ARGV[4]), split(ARGV[5])
local out = {0, backlog}
local accepted = 0
for i = 1, n do
  local id = ids[i]
  if redis.call('SET', ARGV[3] .. string.sub(redis.sha1hex(id), 1, 20), '1', 'NX', 'EX', ARGV[2])
      and (ARGV[7] == nil or redis.call('EXISTS', ARGV[7] .. id) == 0) then
    out[#out + 1] = redis.call('XADD', KEYS[1], '*', 'e', payloads[i])
    accepted = accepted + 1
  else
    out[#out + 1] = 0
  end
end
if accepted > 0 then
  redis.call('INCRBY', KEYS[2], accepted)
  redis.call('HINCRBY', KEYS[3], 'events_accepted', accepted)
end
if accepted < n then
  redis.call('HINCRBY', KEYS[3], 'events_duplicate', n - accepted)
end
return out

-- Ack entries of the events stream and lower the backlog counter by as many as were pending.
-- KEYS[1] stream, KEYS[2] backlog counter; ARGV[1] group, ARGV[2..] entry ids
local group = ARGV[1]
local acked = 0
for i = 2, #ARGV do
  acked = acked + redis.call('XACK', KEYS[1], group, ARGV[i])
end
if acked > 0 and KEYS[2] ~= '' then
  local left = redis.call('DECRBY', KEYS[2], acked)
  if left < 0 then redis.call('SET', KEYS[2], 0) end
end
return acked

-- Drop the fields of hash KEYS[1] that still hold the value they were read with: a
-- sweep read them as past their retention, and one written since is new, and stays.
-- ARGV: field, value pairs. Returns how many were dropped.
local dropped = 0
for i = 1, #ARGV - 1, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    dropped = dropped + redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return dropped

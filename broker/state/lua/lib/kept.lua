-- An event as a slot keeps it (state/held.py has the layout): put in front of the
-- scripts that write or read one (`util.script`), before the libs that use it.

local RS = '\30'

-- The arrival part of an order key (`<occurred>|<ms, 15 digits>-<seq>`): when the
-- stream took the event, which is when it landed unless it came from an earlier
-- Baton's entry that said otherwise.
local function arrival(order)
  local bar = string.find(order, '|', 1, true)
  return bar and tonumber(string.sub(order, bar + 1, bar + 15))
end

-- Order key, landing time (ms; left empty when it is the order key's arrival), id and
-- the rest (JSON), as one text.
local function kept(order, landed, id, rest)
  if arrival(order) == tonumber(landed) then landed = '' end
  return order .. RS .. landed .. RS .. id .. RS .. rest
end

-- `kept`'s text taken apart: order key, landing time (ms), id; nil if it is not one.
local function unkept(v)
  local a = string.find(v, RS, 1, true)
  local b = a and string.find(v, RS, a + 1, true)
  local c = b and string.find(v, RS, b + 1, true)
  if not c then return nil end
  local order = string.sub(v, 1, a - 1)
  local landed = b > a + 1 and tonumber(string.sub(v, a + 1, b - 1)) or arrival(order) or 0
  return order, landed, string.sub(v, b + 1, c - 1)
end

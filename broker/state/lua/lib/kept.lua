-- An event as a slot keeps it (state/held.py has the layout): put in front of the
-- scripts that write or read one (`util.script`), before the libs that use it.

local RS = '\30'

-- An order key is `<occurred>|<ms>-<seq>` (state/held.py): the arrival part is the
-- stream id the event came in as; `<occurred>` is empty when the event occurred as it
-- arrived (to the ms), else `<s>.<us>` (epoch seconds and microseconds), or the
-- `YYYY-MM-DDTHH:MM:SS.ffffff` an earlier Baton wrote, with its arrival zero-padded.

-- The arrival part's ms: when the stream took the event, which is when it landed unless
-- it came from an earlier Baton's entry that said otherwise.
local function arrival(order)
  local bar = string.find(order, '|', 1, true)
  local ms = bar and string.match(order, '^(%d+)', bar + 1)
  return ms and tonumber(ms)
end

-- Days from 1970-01-01 to a date of the proleptic Gregorian calendar.
local function civil_days(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * ((m + 9) % 12) + 2) / 5) + d - 1
  return era * 146097 + yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy - 719468
end

-- An order key as the numbers it sorts by: occurred (s, us), arrival ms, seq. Each is
-- exact in a double (the seconds of any year, the ms of the next 280 millennia).
local function order_parts(key)
  local bar = string.find(key, '|', 1, true) or (#key + 1)
  local ms, seq = string.match(key, '^(%d+)%-(%d+)', bar + 1)
  ms, seq = tonumber(ms) or 0, tonumber(seq) or 0
  local occurred = string.sub(key, 1, bar - 1)
  if occurred == '' then return math.floor(ms / 1000), (ms % 1000) * 1000, ms, seq end
  local y, mo, d, hh, mm, ss, f = string.match(occurred,
    '^(%d+)%-(%d+)%-(%d+)T(%d+):(%d+):(%d+)%.(%d+)$')
  if y then
    local s = civil_days(tonumber(y), tonumber(mo), tonumber(d)) * 86400
      + tonumber(hh) * 3600 + tonumber(mm) * 60 + tonumber(ss)
    return s, tonumber(f), ms, seq
  end
  local s, us = string.match(occurred, '^(%-?%d+)%.(%d+)$')
  return tonumber(s) or 0, tonumber(us) or 0, ms, seq
end

-- Whether order key `a` sorts after `b`: it occurred later, or at once and came later.
local function later(a, b)
  local x, y = {order_parts(a)}, {order_parts(b)}
  for i = 1, 4 do
    if x[i] ~= y[i] then return x[i] > y[i] end
  end
  return false
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

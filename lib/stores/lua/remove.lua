#!lua flags=allow-oom
-- nestjs-idempotent ValkeyStore: remove (entry format 2, see valkey-codec.ts). Only frees memory,
-- so it may run when the server is out of memory.
-- KEYS[1] entry.
-- ARGV[1] and ARGV[2] header bytes 0-39 of the entry this release expects, processing and
-- completed (format, state, claim id).
-- Returns 0 applied, 1 fencing mismatch, 2 key expired.
-- An applied release of an entry a claim found in flight (state `w`, see claim.lua) is announced
-- on the shard channel named like the entry (same slot), to the requests waiting for the key
-- (waitMs).
local h = redis.pcall('GETRANGE', KEYS[1], 0, 39)
if h == ARGV[1] or h == ARGV[2] then
  redis.call('DEL', KEYS[1])
  return 0
end
local id = string.sub(ARGV[1], 3)
if type(h) == 'table' then
  -- Not a string: a format 1 hash (the previous version's entry), else foreign data.
  local v = redis.pcall('HMGET', KEYS[1], 'v', 'state', 'token', 'nonce')
  if v.err or v[1] ~= '1' or (v[2] ~= 'processing' and v[2] ~= 'completed') or not v[3] or not v[4] then
    return redis.error_reply('IDEMCORRUPT not an idempotency entry (' .. (h.err or '') .. ')')
  end
  local n = tonumber(string.sub(id, 1, 16), 16)
  if not n or v[3] ~= string.format('%d', n) or v[4] ~= string.sub(id, 17) then
    return 1
  end
  redis.call('DEL', KEYS[1])
  redis.call('SPUBLISH', KEYS[1], 'r')
  return 0
end
if h == '' and redis.call('EXISTS', KEYS[1]) == 0 then
  return 2
end
local s = string.byte(h, 2)
if #h < 40 or string.byte(h, 1) ~= 2 or (s ~= 112 and s ~= 99 and s ~= 119 and s ~= 117) then
  return redis.error_reply('IDEMCORRUPT not an idempotency entry of format 2')
end
if s == 117 and string.sub(h, 3) == id then
  -- Completed, not yet acknowledged (durability): nobody waits on a completed entry.
  redis.call('DEL', KEYS[1])
  return 0
end
if s == 119 and string.sub(h, 3) == id then
  redis.call('DEL', KEYS[1])
  redis.call('SPUBLISH', KEYS[1], 'r')
  return 0
end
return 1

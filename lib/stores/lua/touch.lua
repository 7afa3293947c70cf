#!lua flags=allow-oom
-- nestjs-idempotent ValkeyStore: touch (entry format 2, see valkey-codec.ts). Rewrites six bytes
-- in place, so it may run when the server is out of memory (a refused renewal would lose the lease).
-- KEYS[1] entry.
-- ARGV[1] header bytes 0-39 of the processing entry this renewal expects (format, state `p`,
-- claim id; state `w`, a processing entry a claim found in flight, is renewed too), ARGV[2] the
-- new lease as header bytes 72-77, ARGV[3] the new lease in ms.
-- Returns 0 applied, 1 fencing mismatch, 2 key expired (also for a completed entry).
local h = redis.pcall('GETRANGE', KEYS[1], 0, 39)
if h == ARGV[1] then
  redis.call('SETRANGE', KEYS[1], 72, ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
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
  if v[2] == 'completed' then
    return 2
  end
  redis.call('HSET', KEYS[1], 'ttl', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 0
end
if h == '' and redis.call('EXISTS', KEYS[1]) == 0 then
  return 2
end
local s = string.byte(h, 2)
if #h < 40 or string.byte(h, 1) ~= 2 or (s ~= 112 and s ~= 99 and s ~= 119 and s ~= 117) then
  return redis.error_reply('IDEMCORRUPT not an idempotency entry of format 2')
end
if string.sub(h, 3) ~= id then
  return 1
end
if s == 119 then
  redis.call('SETRANGE', KEYS[1], 72, ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 0
end
-- Completed: the lease is over.
return 2

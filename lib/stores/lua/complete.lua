#!lua
-- nestjs-idempotent ValkeyStore: complete (entry format 2, see valkey-codec.ts).
-- KEYS[1] entry.
-- ARGV[1] header bytes 0-71 of the processing entry this completion expects (format, state `p`,
-- claim id, fingerprint), ARGV[2] the completed entry (state `c`, or `u` with durability), ARGV[3]
-- ttl in ms.
-- Returns 0 applied, 1 fencing mismatch, 2 key expired, 3 fingerprint mismatch.
-- An applied completion of an entry a claim found in flight (state `w`, see claim.lua) is
-- announced on the shard channel named like the entry (same slot), to the requests waiting for
-- the key (waitMs).
local h = redis.pcall('GETRANGE', KEYS[1], 0, 71)
if h == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 0
end
local id, fp = string.sub(ARGV[1], 3, 40), string.sub(ARGV[1], 41)
if type(h) == 'table' then
  -- Not a string: a format 1 hash (the previous version's entry), else foreign data.
  local v = redis.pcall('HMGET', KEYS[1], 'v', 'state', 'fp', 'token', 'nonce')
  if v.err or v[1] ~= '1' or (v[2] ~= 'processing' and v[2] ~= 'completed') or not v[3] or not v[4] or not v[5] then
    return redis.error_reply('IDEMCORRUPT not an idempotency entry (' .. (h.err or '') .. ')')
  end
  local n = tonumber(string.sub(id, 1, 16), 16)
  if not n or v[4] ~= string.format('%d', n) or v[5] ~= string.sub(id, 17) then
    return 1
  end
  if v[3] ~= fp then
    return 3
  end
  if v[2] == 'processing' then
    redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
    redis.call('SPUBLISH', KEYS[1], 'c')
  end
  return 0
end
if h == '' and redis.call('EXISTS', KEYS[1]) == 0 then
  return 2
end
local s = string.byte(h, 2)
if #h < 72 or string.byte(h, 1) ~= 2 or (s ~= 112 and s ~= 99 and s ~= 119 and s ~= 117) then
  return redis.error_reply('IDEMCORRUPT not an idempotency entry of format 2')
end
if string.sub(h, 3, 40) ~= id then
  return 1
end
if string.sub(h, 41) ~= fp then
  return 3
end
if s == 119 then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  redis.call('SPUBLISH', KEYS[1], 'c')
end
-- Else completed by this claim already (`c`, or `u` not yet acknowledged; a repeated
-- completion): the first response stays.
return 0

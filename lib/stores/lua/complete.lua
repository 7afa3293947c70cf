#!lua
-- nestjs-idempotent ValkeyStore: complete (entry format v=1).
-- KEYS[1] entry hash.
-- ARGV[1] token, ARGV[2] nonce, ARGV[3] fingerprint, ARGV[4] ttl in ms, ARGV[5] status code,
-- ARGV[6] body (raw bytes), ARGV[7] metadata (JSON).
-- Returns 0 applied, 1 fencing mismatch, 2 key expired, 3 fingerprint mismatch.
local h = redis.pcall('HMGET', KEYS[1], 'v', 'state', 'fp', 'token', 'nonce')
if h.err then
  return redis.error_reply('IDEMCORRUPT ' .. h.err)
end
if not h[1] then
  if redis.call('EXISTS', KEYS[1]) == 0 then
    return 2
  end
  return redis.error_reply('IDEMCORRUPT no format version')
end
if h[1] ~= '1' or (h[2] ~= 'processing' and h[2] ~= 'completed') or not h[3] or not h[4] or not h[5] then
  return redis.error_reply('IDEMCORRUPT unsupported or incomplete entry')
end
if h[4] ~= ARGV[1] or h[5] ~= ARGV[2] then
  return 1
end
if h[3] ~= ARGV[3] then
  return 3
end
if h[2] == 'completed' then
  return 0
end
redis.call('HSET', KEYS[1], 'state', 'completed', 'ttl', ARGV[4], 'status', ARGV[5], 'body', ARGV[6], 'meta', ARGV[7])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 0

#!lua flags=allow-oom
-- nestjs-idempotent ValkeyStore: touch (entry format v=1). Rewrites one small field in place, so
-- it may run when the server is out of memory (a refused renewal would lose the lease).
-- KEYS[1] entry hash.
-- ARGV[1] token, ARGV[2] nonce, ARGV[3] new lease in ms.
-- Returns 0 applied, 1 fencing mismatch, 2 key expired (also for a completed entry).
local h = redis.pcall('HMGET', KEYS[1], 'v', 'state', 'token', 'nonce')
if h.err then
  return redis.error_reply('IDEMCORRUPT ' .. h.err)
end
if not h[1] then
  if redis.call('EXISTS', KEYS[1]) == 0 then
    return 2
  end
  return redis.error_reply('IDEMCORRUPT no format version')
end
if h[1] ~= '1' or (h[2] ~= 'processing' and h[2] ~= 'completed') or not h[3] or not h[4] then
  return redis.error_reply('IDEMCORRUPT unsupported or incomplete entry')
end
if h[3] ~= ARGV[1] or h[4] ~= ARGV[2] then
  return 1
end
if h[2] == 'completed' then
  return 2
end
redis.call('HSET', KEYS[1], 'ttl', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 0

#!lua flags=allow-oom
-- nestjs-idempotent ValkeyStore: remove (entry format v=1). Only frees memory, so it may run when
-- the server is out of memory.
-- KEYS[1] entry hash.
-- ARGV[1] token, ARGV[2] nonce.
-- Returns 0 applied, 1 fencing mismatch, 2 key expired.
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
redis.call('DEL', KEYS[1])
return 0

#!lua
-- nestjs-idempotent ValkeyStore: claim (entry format v=1).
-- KEYS[1] entry hash, KEYS[2] fencing counter of the key's bucket (same hash tag).
-- ARGV[1] fingerprint (32 hex digits), ARGV[2] lease in ms, ARGV[3] nonce of this claim attempt.
-- Returns the new token (integer) when claimed, else the stored entry as HGETALL pairs. A re-sent
-- claim finds its own nonce in the stored entry; the caller turns that back into the same claim.
local entry = redis.pcall('HGETALL', KEYS[1])
if entry.err then
  return redis.error_reply('IDEMCORRUPT ' .. entry.err)
end
if #entry > 0 then
  return entry
end
local token = redis.pcall('INCR', KEYS[2])
if type(token) == 'table' then
  return redis.error_reply('IDEMCORRUPT fencing counter: ' .. tostring(token.err))
end
redis.call('HSET', KEYS[1], 'v', '1', 'state', 'processing', 'fp', ARGV[1], 'token', string.format('%d', token),
  'nonce', ARGV[3], 'ttl', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return token

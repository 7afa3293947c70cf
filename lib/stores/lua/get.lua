#!lua flags=no-writes
-- nestjs-idempotent ValkeyStore: get (entry format 2, see valkey-codec.ts).
-- KEYS[1] entry.
-- Returns the stored entry: its string, the HGETALL pairs of a format 1 hash the previous version
-- left, or nil.
local e = redis.pcall('GET', KEYS[1])
if type(e) == 'table' then
  if redis.call('TYPE', KEYS[1]).ok == 'hash' then
    return redis.call('HGETALL', KEYS[1])
  end
  return redis.error_reply('IDEMCORRUPT ' .. e.err)
end
return e

#!lua
-- nestjs-idempotent ValkeyStore: claim (entry format 2, see valkey-codec.ts).
-- KEYS[1] entry, KEYS[2] fencing counter of the key's bucket (same hash tag).
-- ARGV[1] the entry's bytes after its token (nonce, fingerprint, lease, empty response fields);
-- the lease in ms is read from its bytes 55-60 (6 bytes, big-endian), so a replay is sent one
-- argument fewer. ARGV[2] is sent (any value) only by a store with `durability`.
-- Returns the new token (integer) when claimed, else the stored entry: its string, or the HGETALL
-- pairs of a format 1 hash the previous version left. A re-sent claim finds its own nonce in the
-- stored entry; the caller turns that back into the same claim.
-- A processing entry (84 bytes, state `p`) found here is marked `w`: its caller may wait for the
-- key (waitMs), so the complete and remove scripts announce its end. Entries nobody asked for
-- while in flight end without a message. A completed entry not yet acknowledged (state `u`, see
-- ack.lua) found by a store with `durability` (ARGV[2]) bumps the fencing counter by 0, for the WAIT
-- behind the script; a store without it sends no WAIT, so a replay there of a completed entry
-- (longer than 84 bytes) reads no byte of it (about 500 fewer instructions).
-- GET's answer is nil (false), the entry's string, or an error table (not a string): tested in
-- that order, without type(), the common paths take fewer steps (Valkey runs about 500 fewer
-- instructions per claim than with a type() test first).
local e = redis.pcall('GET', KEYS[1])
if not e then
  local t = redis.pcall('INCR', KEYS[2])
  if type(t) == 'table' then
    return redis.error_reply('IDEMCORRUPT fencing counter: ' .. t.err)
  end
  local l1, l2, l3, l4, l5, l6 = string.byte(ARGV[1], 55, 60)
  local lease = ((((l1 * 256 + l2) * 256 + l3) * 256 + l4) * 256 + l5) * 256 + l6
  redis.call('SET', KEYS[1], '\2p' .. string.format('%016x', t) .. ARGV[1], 'PX', lease)
  return t
end
if e.err then
  -- Not a string (a string's `err` is nil): a format 1 hash, else foreign data.
  if redis.call('TYPE', KEYS[1]).ok == 'hash' then
    return redis.call('HGETALL', KEYS[1])
  end
  return redis.error_reply('IDEMCORRUPT ' .. e.err)
end
if #e == 84 or ARGV[2] then
  local s = string.byte(e, 2)
  if s == 112 and #e == 84 then
    redis.call('SETRANGE', KEYS[1], 1, 'w')
  elseif s == 117 and ARGV[2] then
    -- Completed, not yet acknowledged (durability): a write, so the WAIT sent behind this script
    -- counts the acknowledgements of what follows the completion in the replication stream.
    redis.call('INCRBY', KEYS[2], 0)
  end
end
return e

#!lua flags=allow-oom
-- nestjs-idempotent ValkeyStore: ack (entry format 2, see valkey-codec.ts). With `durability`, a
-- completed entry is written in state `u` (not yet acknowledged); once the replicas (or AOF
-- writes) asked for acknowledged it, this rewrites the state byte to `c` in place, so later
-- replays (also on a promoted replica) answer without waiting. Rewrites one byte, so it may run
-- when the server is out of memory.
-- KEYS[1] entry.
-- ARGV[1] header bytes 0-39 of the entry it expects (format, state `u`, claim id).
-- Returns 0 rewritten, 1 not that entry (already acknowledged, replaced, or gone).
if redis.pcall('GETRANGE', KEYS[1], 0, 39) == ARGV[1] then
  redis.call('SETRANGE', KEYS[1], 1, 'c')
  return 0
end
return 1

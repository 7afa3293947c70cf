// The least a layer whose steps are Lua scripts (DESIGN.md section 2) must run on Valkey: the
// yardstick of the Valkey targets, used by the `floor-valkey` variant of bench/http.js and by
// bench/valkey-instructions.js.
'use strict';

// A claim reads the key, and only when it is free draws a token from a counter and stores the
// processing entry with its lease; a replay is this read. Answers the token, or the stored value.
const FLOOR_CLAIM = `#!lua
local e = redis.call('GET', KEYS[1])
if e then return e end
local t = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], 'p' .. t, 'PX', ARGV[1])
return t`;

// A completion checks the entry still holds its token and stores the response with the replay
// window. Answers 1 when stored, 0 when the entry holds something else.
const FLOOR_COMPLETE = `#!lua
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1`;

/**
 * Defines the two scripts on an ioredis client and answers `{ claim(key, leaseMs), complete(key,
 * token, value, ttlMs) }` for keys under one hash tag (`{0}`, with its counter).
 */
function floorScripts(client, prefix = 'bench:') {
  client.defineCommand('floorClaim', { numberOfKeys: 2, lua: FLOOR_CLAIM });
  client.defineCommand('floorComplete', { numberOfKeys: 1, lua: FLOOR_COMPLETE });
  const fence = `${prefix}{0}:fence`;
  return {
    /** The token (a number) when claimed, else the stored value (a Buffer). */
    claim: (key, leaseMs) => client.floorClaimBuffer(`${prefix}{0}:e:${key}`, fence, leaseMs),
    complete: (key, token, value, ttlMs) => client.floorComplete(`${prefix}{0}:e:${key}`, `p${token}`, value, ttlMs),
  };
}

module.exports = { FLOOR_CLAIM, FLOOR_COMPLETE, floorScripts };

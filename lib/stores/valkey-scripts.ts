import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** The store's Lua scripts, by operation. @internal */
export interface ValkeyScripts {
  readonly claim: string;
  readonly complete: string;
  readonly touch: string;
  readonly remove: string;
  readonly get: string;
  readonly ack: string;
}

/** Number of keys each script declares (the rest of its arguments are ARGV). @internal */
export const SCRIPT_KEYS: Readonly<Record<keyof ValkeyScripts, number>> = {
  claim: 2,
  complete: 1,
  touch: 1,
  remove: 1,
  get: 1,
  ack: 1,
};

let cached: ValkeyScripts | undefined;

/**
 * The Lua sources from `lua/*.lua` next to this module (shipped in the build), read once per
 * process.
 * @internal
 */
export function valkeyScripts(): ValkeyScripts {
  if (cached === undefined) {
    const read = (name: string): string => {
      const source = readFileSync(join(__dirname, 'lua', `${name}.lua`), 'utf8');
      if (!source.startsWith('#!lua')) throw new Error(`lua/${name}.lua must start with a #!lua shebang`);
      return source;
    };
    cached = Object.freeze({
      claim: read('claim'),
      complete: read('complete'),
      touch: read('touch'),
      remove: read('remove'),
      get: read('get'),
      ack: read('ack'),
    });
  }
  return cached;
}

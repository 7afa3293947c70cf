/**
 * JSON text of `value` with the keys of every object sorted, so two values that differ only in
 * key order give the same text. Otherwise it follows `JSON.stringify` (`toJSON()` is called;
 * `undefined`, functions and symbols are left out of objects and become `null` in arrays;
 * non-finite numbers become `null`), which makes it the RFC 8785 (JCS) form for anything
 * `JSON.parse` returns.
 *
 * It walks the value with an explicit stack, not recursion, so how deep a request body nests
 * never decides whether it can be fingerprinted. A cycle throws a `TypeError`, as in
 * `JSON.stringify`.
 */
export function canonicalJson(value: unknown): string | undefined {
  return canonical(value, false);
}

/**
 * {@link canonicalJson} for fingerprints: non-finite numbers are written as `Infinity`,
 * `-Infinity` and `NaN` (which no JSON text contains) instead of `null`, and negative zero as
 * `-0` instead of `0`, so two values a handler can tell apart (`{"amount":1e400}` parses to
 * Infinity, `{"x":-0}` to -0) never give the same text.
 * @internal
 */
export function fingerprintJson(value: unknown): string | undefined {
  return canonical(value, true);
}

function canonical(value: unknown, exact: boolean): string | undefined {
  const top = prepare(value, '');
  if (top === undefined) return undefined;
  if (!isContainer(top)) return primitive(top, exact);
  // Shallow values (nearly every request body) take a recursive path of bounded depth; deeper
  // ones (and cycles) the iterative walk below. Both give the same text.
  const fast = shallow(top, 0, exact);
  if (fast !== undefined) return fast;
  return walk(top, exact);
}

/** Deepest nesting the recursive path handles; past it, the value is walked iteratively. */
const MAX_RECURSION = 32;

/** The canonical text of a container nested at most {@link MAX_RECURSION} deep, else `undefined`. */
function shallow(container: object, depth: number, exact: boolean): string | undefined {
  if (depth >= MAX_RECURSION) return undefined;
  let out: string;
  if (Array.isArray(container)) {
    out = '[';
    for (let i = 0; i < container.length; i++) {
      if (i > 0) out += ',';
      const item = prepare(container[i], String(i));
      if (item === undefined) out += 'null';
      else if (isContainer(item)) {
        const text = shallow(item, depth + 1, exact);
        if (text === undefined) return undefined;
        out += text;
      } else out += primitive(item, exact);
    }
    return out + ']';
  }
  const keys = sortedKeys(container);
  out = '{';
  let written = 0;
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i];
    const item = prepare((container as Record<string, unknown>)[key], key);
    if (item === undefined) continue;
    if (written++ > 0) out += ',';
    out += quote(key) + ':';
    if (isContainer(item)) {
      const text = shallow(item, depth + 1, exact);
      if (text === undefined) return undefined;
      out += text;
    } else out += primitive(item, exact);
  }
  return out + '}';
}

/**
 * The keys of `object` in code-unit order, as `Object.keys(object).sort()` gives them. Small
 * objects (nearly every request body) are sorted in place by insertion, which allocates nothing;
 * `Array.prototype.sort` allocates a work array on every call.
 */
function sortedKeys(object: object): string[] {
  const keys = Object.keys(object);
  if (keys.length > 16) return keys.sort();
  for (let i = 1; i < keys.length; i++) {
    const key = keys[i];
    let j = i - 1;
    while (j >= 0 && keys[j] > key) {
      keys[j + 1] = keys[j];
      j--;
    }
    keys[j + 1] = key;
  }
  return keys;
}

function walk(top: object, exact: boolean): string {
  let out = '';
  // Each frame is a container being written: its items (or sorted keys) and the next index.
  const stack: Frame[] = [];
  const ancestors = new Set<object>();
  open(top);

  function open(container: object): void {
    if (ancestors.has(container)) throw new TypeError('canonicalJson: cannot serialise a cyclic structure');
    ancestors.add(container);
    if (Array.isArray(container)) {
      out += '[';
      stack.push({ container, keys: undefined, index: 0, written: 0 });
    } else {
      out += '{';
      stack.push({ container, keys: sortedKeys(container), index: 0, written: 0 });
    }
  }

  while (stack.length > 0) {
    const frame = stack[stack.length - 1];
    const { container, keys } = frame;
    if (keys === undefined) {
      const items = container as unknown[];
      if (frame.index >= items.length) {
        out += ']';
        close(frame);
        continue;
      }
      const i = frame.index++;
      if (frame.written++ > 0) out += ',';
      const item = prepare(items[i], String(i));
      if (item === undefined) out += 'null';
      else if (isContainer(item)) open(item);
      else out += primitive(item, exact);
    } else {
      if (frame.index >= keys.length) {
        out += '}';
        close(frame);
        continue;
      }
      const key = keys[frame.index++];
      const item = prepare((container as Record<string, unknown>)[key], key);
      if (item === undefined) continue;
      if (frame.written++ > 0) out += ',';
      out += quote(key) + ':';
      if (isContainer(item)) open(item);
      else out += primitive(item, exact);
    }
  }
  return out;

  function close(frame: Frame): void {
    stack.pop();
    ancestors.delete(frame.container);
  }
}

interface Frame {
  container: object;
  /** Sorted keys of an object; `undefined` for an array. */
  keys: string[] | undefined;
  index: number;
  written: number;
}

/** `toJSON()` and the values JSON leaves out, as `JSON.stringify` treats them. */
function prepare(value: unknown, key: string): unknown {
  switch (typeof value) {
    case 'string':
    case 'number':
    case 'boolean':
      return value;
    case 'undefined':
    case 'function':
    case 'symbol':
      return undefined;
    case 'bigint':
      if (typeof (BigInt.prototype as { toJSON?: unknown }).toJSON !== 'function') return value;
      return prepare((value as unknown as { toJSON(key: string): unknown }).toJSON(key), key);
  }
  if (value === null) return null;
  if (typeof (value as { toJSON?: unknown }).toJSON === 'function') {
    value = (value as { toJSON(key: string): unknown }).toJSON(key);
    if (value === undefined || typeof value === 'function' || typeof value === 'symbol') return undefined;
  }
  // Boxed primitives serialise as their value.
  if (value instanceof Number) return Number(value);
  if (value instanceof String) return String(value);
  if (value instanceof Boolean) return value.valueOf();
  return value;
}

function isContainer(value: unknown): value is object {
  return value !== null && typeof value === 'object';
}

function primitive(value: unknown, exact: boolean): string {
  switch (typeof value) {
    case 'string':
      return quote(value);
    case 'number':
      // `String(-0)` is `'0'`: for fingerprints, -0 keeps its sign (a handler can tell them apart).
      if (exact) return value === 0 && 1 / value < 0 ? '-0' : String(value);
      return Number.isFinite(value) ? String(value) : 'null';
    case 'boolean':
      return value ? 'true' : 'false';
    case 'bigint':
      throw new TypeError('canonicalJson: cannot serialise a BigInt');
    default:
      return 'null';
  }
}

/** `JSON.stringify` of a string, without calling it for the common string that needs no escape. */
function quote(text: string): string {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 || c === 0x22 || c === 0x5c || (c >= 0xd800 && c <= 0xdfff)) return JSON.stringify(text);
  }
  return '"' + text + '"';
}

import { IdempotencyKey } from '../index';
import { AtMostOnceLedger } from './at-most-once-ledger';

describe('AtMostOnceLedger', () => {
  it('counts the runs of each key; a key object and its string are the same key', () => {
    const ledger = new AtMostOnceLedger();
    const key = new IdempotencyKey('order-1');
    expect(ledger.record(key)).toBe(1);
    expect(ledger.record('order-1')).toBe(2);
    expect(ledger.record(key.scoped('alice'))).toBe(1);
    expect(ledger.count('order-1')).toBe(2);
    expect(ledger.count(key.scoped('alice'))).toBe(1);
    expect(ledger.count('never')).toBe(0);
    expect(ledger.entries()).toEqual([
      ['order-1', 2],
      ['order-1/alice', 1],
    ]);
  });

  it('passes when no key ran twice', () => {
    const ledger = new AtMostOnceLedger();
    expect(() => ledger.assertAtMostOnce()).not.toThrow();
    ledger.record('a');
    ledger.record('b');
    expect(() => ledger.assertAtMostOnce()).not.toThrow();
  });

  it('names every key that ran more than once, with its count, and no other', () => {
    const ledger = new AtMostOnceLedger();
    for (const key of ['a', 'b', 'a', 'c', 'c', 'c', 'say "hi"', 'say "hi"']) ledger.record(key);
    expect(() => ledger.assertAtMostOnce()).toThrow(
      new Error('ran more than once: "a" (2 times), "c" (3 times), "say \\"hi\\"" (2 times)'),
    );
  });

  it('forgets everything on clear', () => {
    const ledger = new AtMostOnceLedger();
    ledger.record('a');
    ledger.record('a');
    ledger.clear();
    expect(ledger.entries()).toEqual([]);
    expect(() => ledger.assertAtMostOnce()).not.toThrow();
    expect(ledger.record('a')).toBe(1);
  });
});

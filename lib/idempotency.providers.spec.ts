import { DefaultFingerprintStrategy } from './core/fingerprint-strategy';
import { Fingerprint } from './core/fingerprint';
import { Idempotent } from './binding/idempotent.decorator';
import {
  createModuleState,
  DEFAULT_IDEMPOTENCY_OPTIONS,
  defaultScope,
  mergeOptions,
  validateOptions,
} from './idempotency.providers';
import type { IdempotencyModuleOptions, IdempotencyOptions } from './interfaces/idempotency-options.interface';
import { MemoryStore } from './stores/memory.store';
import { FaultyStore } from './testing/faulty-store';

describe('idempotency options', () => {
  it('has the documented defaults', () => {
    expect(DEFAULT_IDEMPOTENCY_OPTIONS).toMatchObject({
      headerName: 'Idempotency-Key',
      headerKey: 'idempotency-key',
      required: false,
      leaseMs: 10_000,
      ttlMs: 86_400_000,
      replayHeaders: [],
      cacheErrors: false,
      failOpen: false,
      maxResponseBytes: 1024 * 1024,
      retryAfterSeconds: 1,
    });
    expect(DEFAULT_IDEMPOTENCY_OPTIONS.fingerprint).toBeInstanceOf(DefaultFingerprintStrategy);
    expect(DEFAULT_IDEMPOTENCY_OPTIONS.scope).toBe(defaultScope);
  });

  it('the default scope is user.id, else user.sub', () => {
    expect(defaultScope({ user: { id: 7, sub: 'x' } })).toBe(7);
    expect(defaultScope({ user: { sub: 'auth0|1' } })).toBe('auth0|1');
    expect(defaultScope({ user: { name: 'n' } })).toBeUndefined();
    expect(defaultScope({})).toBeUndefined();
  });

  it('route options override module options, undefined ones do not', () => {
    const module = mergeOptions(DEFAULT_IDEMPOTENCY_OPTIONS, { leaseMs: 5_000, headerName: 'X-Key' });
    const route = mergeOptions(module, { required: true, leaseMs: undefined });
    expect(route).toMatchObject({ leaseMs: 5_000, headerName: 'X-Key', headerKey: 'x-key', required: true });
    expect(Object.isFrozen(route)).toBe(true);
  });

  it.each<[string, unknown, RegExp]>([
    ['unknown option', { leaseTime: 1 }, /unknown option "leaseTime"/],
    ['bad header', { headerName: 'a b' }, /headerName/],
    ['bad lease', { leaseMs: 0 }, /leaseMs/],
    ['bad ttl', { ttlMs: 1.5 }, /ttlMs/],
    ['bad required', { required: 'yes' }, /required/],
    ['bad limit', { maxResponseBytes: -1 }, /maxResponseBytes/],
    ['bad fingerprint', { fingerprint: {} }, /fingerprint/],
    ['bad scope', { scope: 'user' }, /scope/],
    ['bad replayHeaders', { replayHeaders: ['ok', 'not ok'] }, /replayHeaders/],
    ['bad cacheErrors', { cacheErrors: [42] }, /cacheErrors/],
  ])('refuses %s at once', (_name, options, message) => {
    expect(() => validateOptions(options as IdempotencyOptions, 'test')).toThrow(message);
    expect(() => Idempotent(options as IdempotencyOptions)).toThrow(message);
  });

  it('forRoot accepts a store or { store, ...options }', () => {
    const store = new MemoryStore();
    // A MemoryStore lives and dies with the application unless told otherwise; other stores handed
    // to forRoot are the caller's.
    expect(createModuleState(store, false, 'x')).toMatchObject({ store, closeStoreOnShutdown: true });
    expect(createModuleState({ store, closeStoreOnShutdown: false }, false, 'x').closeStoreOnShutdown).toBe(false);
    const other = new FaultyStore(store);
    expect(createModuleState(other, false, 'x').closeStoreOnShutdown).toBe(false);
    expect(createModuleState(other, true, 'x').closeStoreOnShutdown).toBe(true);
    const state = createModuleState({ store: other, ttlMs: 1000, closeStoreOnShutdown: true }, false, 'x');
    expect(state.options.ttlMs).toBe(1000);
    expect(state.closeStoreOnShutdown).toBe(true);
    expect(() => createModuleState({ ttlMs: 1 } as unknown as IdempotencyModuleOptions, false, 'x')).toThrow(/store/);
    void store.close();
  });

  it('types: options are checked by the compiler', () => {
    const ok: IdempotencyOptions = {
      headerName: 'Idempotency-Key',
      required: true,
      leaseMs: 1,
      ttlMs: 1,
      fingerprint: (req) => Fingerprint.fromHex(String(req.headers['x-fp'])),
      scope: (req) => req.user?.tenantId,
      replayHeaders: ['X-Request-Id'],
      cacheErrors: (error) => error instanceof RangeError,
      failOpen: false,
      maxResponseBytes: 10,
      retryAfterSeconds: 2,
    };
    const alsoOk: IdempotencyOptions[] = [
      { fingerprint: new DefaultFingerprintStrategy() },
      { cacheErrors: [409, 422] },
      { cacheErrors: true },
      { scope: false },
    ];
    // @ts-expect-error leaseMs is a number of milliseconds
    const badLease: IdempotencyOptions = { leaseMs: '10s' };
    // @ts-expect-error scope cannot be a constant
    const badScope: IdempotencyOptions = { scope: 'tenant' };
    // @ts-expect-error cacheErrors takes status codes, not names
    const badCache: IdempotencyOptions = { cacheErrors: ['CONFLICT'] };
    // @ts-expect-error a fingerprint function returns a Fingerprint
    const badFingerprint: IdempotencyOptions = { fingerprint: () => 'abc' };
    // @ts-expect-error the module needs a store
    const noStore: IdempotencyModuleOptions = { ttlMs: 1 };
    expect([ok, alsoOk, badLease, badScope, badCache, badFingerprint, noStore]).toHaveLength(7);
  });
});

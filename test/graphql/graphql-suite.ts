import { randomUUID } from 'node:crypto';
import { IDEMPOTENCY_GRAPHQL_ERROR_CODES, IDEMPOTENCY_PROBLEM_TYPES, type IdempotencyStore } from '../../lib';
import { type GraphqlFixture, type GraphqlServer, ledger, startGraphqlApp } from './graphql-app';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function eventually(check: () => boolean, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await sleep(5);
  }
}

const CHARGE = `mutation Charge($amount: Int!, $tag: String!, $delayMs: Int) {
  charge(amount: $amount, tag: $tag, delayMs: $delayMs) { id amount run createdAt }
}`;

/** The resolver behaviour (DESIGN.md 6.4) end to end over HTTP on one server and store. */
export function runGraphqlSuite(
  server: GraphqlServer,
  makeStore: () => Promise<{ store: IdempotencyStore; close(): Promise<void> }>,
): void {
  describe(`@Idempotent() mutations on ${server}`, () => {
    let app: GraphqlFixture;
    let closeStore: () => Promise<void>;

    beforeAll(async () => {
      const { store, close } = await makeStore();
      closeStore = close;
      app = await startGraphqlApp(server, store);
    }, 30_000);

    afterAll(async () => {
      await app?.close();
      await closeStore?.();
    });

    const charge = (key: string | undefined, variables: Record<string, unknown>, extra: Record<string, string> = {}) =>
      app.post(CHARGE, key === undefined ? extra : { 'Idempotency-Key': key, ...extra }, variables);

    it('a duplicate mutation with the same key runs once and replays the stored result', async () => {
      const key = randomUUID();
      const tag = randomUUID();
      const first = await charge(key, { amount: 42, tag });
      expect(first.errors).toBeUndefined();
      expect(first.data?.charge).toEqual({
        id: expect.stringMatching(/^ch_/),
        amount: 42,
        run: 1,
        createdAt: '1970-01-01T00:00:00.000Z',
      });
      const again = await charge(key, { amount: 42, tag });
      expect(again).toEqual(first);
      expect(ledger.count(`charge:${tag}`)).toBe(1);
    });

    it('a changed argument under the same key is refused with IDEMPOTENCY_KEY_REUSED', async () => {
      const key = randomUUID();
      const tag = randomUUID();
      await charge(key, { amount: 1, tag });
      const refused = await charge(key, { amount: 2, tag });
      expect(refused.data).toBeNull();
      expect(refused.errors).toHaveLength(1);
      expect(refused.errors![0]).toMatchObject({
        path: ['charge'],
        extensions: {
          code: IDEMPOTENCY_GRAPHQL_ERROR_CODES.keyReused,
          type: IDEMPOTENCY_PROBLEM_TYPES.keyReused,
          title: 'Idempotency key reused',
          status: 422,
          detail: 'This idempotency key was already used for a different mutation (field or arguments).',
        },
      });
      expect(ledger.count(`charge:${tag}`)).toBe(1);
    });

    it('concurrent duplicates: one runs, the others get IDEMPOTENCY_IN_FLIGHT', async () => {
      const key = randomUUID();
      const tag = randomUUID();
      // The first holds the key for a while; the duplicates arrive once it runs.
      const first = charge(key, { amount: 7, tag, delayMs: 1_000 });
      await eventually(() => ledger.count(`charge:${tag}`) === 1);
      const duplicates = await Promise.all(
        Array.from({ length: 9 }, () => charge(key, { amount: 7, tag, delayMs: 1_000 })),
      );
      for (const r of duplicates) {
        expect(r.data).toBeNull();
        expect(r.errors![0]).toMatchObject({
          path: ['charge'],
          extensions: {
            code: IDEMPOTENCY_GRAPHQL_ERROR_CODES.inFlight,
            type: IDEMPOTENCY_PROBLEM_TYPES.inFlight,
            status: 409,
          },
        });
      }
      const done = await first;
      expect(done.errors).toBeUndefined();
      expect(ledger.count(`charge:${tag}`)).toBe(1);
      expect(await charge(key, { amount: 7, tag, delayMs: 1_000 })).toEqual(done);
    });

    it('queries are unaffected, with or without a key', async () => {
      const before = ledger.count('hello');
      const key = randomUUID();
      expect((await app.post('{ hello }', { 'Idempotency-Key': key })).data).toEqual({ hello: 'hi' });
      expect((await app.post('{ hello }', { 'Idempotency-Key': key })).data).toEqual({ hello: 'hi' });
      expect(ledger.count('hello')).toBe(before + 2);
    });

    it('no key: the mutation runs every time; a malformed key is IDEMPOTENCY_KEY_INVALID', async () => {
      const tag = randomUUID();
      await charge(undefined, { amount: 1, tag });
      await charge(undefined, { amount: 1, tag });
      expect(ledger.count(`charge:${tag}`)).toBe(2);
      const bad = await charge('a/b', { amount: 1, tag });
      expect(bad.errors![0].extensions).toMatchObject({
        code: IDEMPOTENCY_GRAPHQL_ERROR_CODES.keyInvalid,
        type: IDEMPOTENCY_PROBLEM_TYPES.keyInvalid,
        status: 400,
      });
      expect(ledger.count(`charge:${tag}`)).toBe(2);
    });

    it('keys are scoped to the principal (request.user), as for HTTP routes', async () => {
      const key = randomUUID();
      const tag = randomUUID();
      const alice = await charge(key, { amount: 1, tag }, { 'x-user': 'alice' });
      const bob = await charge(key, { amount: 2, tag }, { 'x-user': 'bob' });
      expect(bob.errors).toBeUndefined();
      expect(bob.data?.charge).toMatchObject({ amount: 2, run: 2 });
      expect(await charge(key, { amount: 1, tag }, { 'x-user': 'alice' })).toEqual(alice);
      expect(ledger.count(`charge:${tag}`)).toBe(2);
    });

    it('bigint user ids scope keys; a request.user without a usable id is refused (IDEMPOTENCY_SCOPE_INVALID), never run unscoped', async () => {
      const key = randomUUID();
      const tag = randomUUID();
      const one = await charge(key, { amount: 1, tag }, { 'x-user': 'bigint:1' });
      const two = await charge(key, { amount: 2, tag }, { 'x-user': 'bigint:2' });
      expect(two.errors).toBeUndefined();
      expect(two.data?.charge).toMatchObject({ amount: 2, run: 2 });
      expect(await charge(key, { amount: 1, tag }, { 'x-user': 'bigint:1' })).toEqual(one);
      const nameless = await charge(randomUUID(), { amount: 3, tag }, { 'x-user': 'no-id' });
      expect(nameless.errors![0].extensions).toMatchObject({
        code: IDEMPOTENCY_GRAPHQL_ERROR_CODES.scopeInvalid,
        type: IDEMPOTENCY_PROBLEM_TYPES.scopeInvalid,
        status: 500,
      });
      expect(ledger.count(`charge:${tag}`)).toBe(2);
    });

    it('the key option derives the key from the arguments', async () => {
      const order = randomUUID();
      const q = `mutation($o: String!, $q: Int!) { placeOrder(orderId: $o, qty: $q) }`;
      expect((await app.post(q, {}, { o: order, q: 3 })).data).toEqual({ placeOrder: 103 });
      expect((await app.post(q, {}, { o: order, q: 3 })).data).toEqual({ placeOrder: 103 });
      const changed = await app.post(q, {}, { o: order, q: 4 });
      expect(changed.errors![0].extensions?.code).toBe(IDEMPOTENCY_GRAPHQL_ERROR_CODES.keyReused);
      expect(ledger.count(`order:${order}`)).toBe(1);
    });

    it('one key guards one mutation field: a second field of the operation with the key is refused', async () => {
      const key = randomUUID();
      const tag = randomUUID();
      const both = await app.post(
        `mutation($t: String!) { a: charge(amount: 1, tag: $t) { run } b: charge(amount: 1, tag: $t) { run } }`,
        { 'Idempotency-Key': key },
        { t: tag },
      );
      // charge is non-null, so b's error nulls the whole result; a ran, b did not.
      expect(both.errors).toHaveLength(1);
      expect(both.errors![0]).toMatchObject({
        path: ['b'],
        extensions: { code: IDEMPOTENCY_GRAPHQL_ERROR_CODES.keyReused },
      });
      expect(ledger.count(`charge:${tag}`)).toBe(1);
    });

    it('@Idempotent() on the resolver class guards its mutations, not its queries', async () => {
      const key = randomUUID();
      const peeks = ledger.count('peek');
      await app.post('{ peek }', { 'Idempotency-Key': key });
      await app.post('{ peek }', { 'Idempotency-Key': key });
      expect(ledger.count('peek')).toBe(peeks + 2);
      const first = await app.post('mutation { bump(by: 3) }', { 'Idempotency-Key': key });
      expect(first.errors).toBeUndefined();
      expect(await app.post('mutation { bump(by: 3) }', { 'Idempotency-Key': key })).toEqual(first);
    });

    it('@IdempotencyClaim() gives the claim in a resolver, undefined when unguarded', async () => {
      const key = randomUUID();
      const q = `mutation($t: String!) { claimed(tag: $t) }`;
      const guarded = JSON.parse((await app.post(q, { 'Idempotency-Key': key }, { t: 'x' })).data!.claimed as string);
      expect(guarded).toEqual({ key, token: expect.stringMatching(/^\d+$/) });
      const unguarded = JSON.parse((await app.post(q, {}, { t: 'y' })).data!.claimed as string);
      expect(unguarded).toEqual({ key: null, token: null });
    });

    it('a resolver without parameter decorators gets its raw arguments', async () => {
      const key = randomUUID();
      const before = ledger.count('bare');
      const first = await app.post('mutation { bare }', { 'Idempotency-Key': key });
      expect(first.data).toEqual({ bare: before + 1 });
      expect(await app.post('mutation { bare }', { 'Idempotency-Key': key })).toEqual(first);
    });
  });
}

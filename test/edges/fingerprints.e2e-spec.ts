/**
 * Issue 17, defect 11 (DESIGN 7.1): values a handler can tell apart never share a fingerprint.
 * `-0` and `0` are such values (`Object.is`, `1 / x`, `Math.sign`), and `String(-0)` is `'0'`.
 */
import { randomUUID } from 'node:crypto';
import { IDEMPOTENCY_PROBLEM_TYPES, MemoryStore } from '../../lib';
import { fingerprintJson } from '../../lib/core/canonical-json';
import { type Platform, startApp, type TestApp } from '../e2e/http-app';

it('the fingerprint text keeps the sign of zero, at any depth', () => {
  expect(fingerprintJson(-0)).toBe('-0');
  expect(fingerprintJson({ x: -0 })).toBe('{"x":-0}');
  expect(fingerprintJson([0, -0, [-0]])).toBe('[0,-0,[-0]]');
  expect(fingerprintJson({ x: 0 })).toBe('{"x":0}');
});

describe.each<Platform>(['express', 'fastify'])('-0 and 0 over HTTP (%s)', (platform) => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startApp(platform, { store: new MemoryStore() });
  });
  afterAll(() => t?.close());

  it('{"x":0} under the key of {"x":-0} is another request: 422, not a replay', async () => {
    const key = randomUUID();
    const headers = { 'idempotency-key': key, 'content-type': 'application/json' };
    const first = await t.client.post('/items', { headers, body: '{"x":-0}' });
    expect(first.status).toBe(201);
    const other = await t.client.post('/items', { headers, body: '{"x":0}' });
    expect(other.status).toBe(422);
    expect(other.json().type).toBe(IDEMPOTENCY_PROBLEM_TYPES.keyReused);
    const again = await t.client.post('/items', { headers, body: '{"x":-0.0}' });
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(t.executions.count(key)).toBe(1);
  });
});

/**
 * The README's quick start, as printed (compiled from README.md), driven like its "try it" curl
 * session on Express and Fastify: the retry is a replay, the changed body is refused with the very
 * problem body the README prints.
 */
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { allSnippets, materialize, ROOT } from './snippets';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { AppModule } = require(materialize('quick-start')) as { AppModule: new () => object };

/** The lines of the README's session that show a response body. */
const session = allSnippets().find(
  (s) => s.where.startsWith('README.md') && s.lang === 'bash' && /uuidgen/.test(s.code),
);

describe.each(['express', 'fastify'] as const)('the README quick start on %s', (platform) => {
  it('runs the "try it" session as printed', async () => {
    expect(session).toBeDefined();
    const printed = session!.code.split('\n').filter((line) => line.startsWith('{'));
    expect(printed).toHaveLength(3);
    const app = await NestFactory.create(
      AppModule,
      platform === 'express' ? new ExpressAdapter() : new FastifyAdapter(),
      {
        logger: false,
      },
    );
    await app.listen(0, '127.0.0.1');
    const url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
    try {
      const key = randomUUID();
      const post = (body: string) =>
        fetch(`${url}/payments`, {
          method: 'POST',
          headers: { 'Idempotency-Key': key, 'Content-Type': 'application/json' },
          body,
        });
      const first = await post('{"amount":42,"currency":"EUR"}');
      const firstText = await first.text();
      expect(first.status).toBe(201);
      // Same shape as printed (the id differs per run).
      expect(JSON.parse(firstText)).toEqual({ ...JSON.parse(printed[0]), id: expect.stringMatching(/^pay_\d+$/) });

      const retry = await post('{"amount":42,"currency":"EUR"}');
      expect(retry.status).toBe(201);
      expect(retry.headers.get('idempotent-replayed')).toBe('true');
      expect(await retry.text()).toBe(firstText);

      const reused = await post('{"amount":99,"currency":"EUR"}');
      expect(reused.status).toBe(422);
      expect(await reused.text()).toBe(printed[2]);
    } finally {
      await app.close();
    }
  });
});

it('the README stays a five-minute read (under ~15 KB)', () => {
  expect(readFileSync(join(ROOT, 'README.md')).byteLength).toBeLessThan(15_000);
});

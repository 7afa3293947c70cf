/**
 * docs/http.md "Key rules": every example key of its table (the rows after `<!-- key examples -->`),
 * sent as printed to a real app on Express and Fastify, gets the answer printed beside it: accepted
 * keys run the handler once (and "the same key as X" makes X a replay), refused ones are 400
 * `key-invalid` with the handler not run.
 */
import { Controller, Headers, Injectable, Module, Post } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { IDEMPOTENCY_PROBLEM_TYPES, IdempotencyModule, Idempotent, MemoryStore } from '../../lib';
import { ROOT } from './snippets';

interface Example {
  sent: string;
  accepted: boolean;
  /** For "the same key as `X`": X, which must then be a replay. */
  sameAs: string | undefined;
}

function examples(): Example[] {
  const page = readFileSync(join(ROOT, 'docs/http.md'), 'utf8');
  const start = page.indexOf('<!-- key examples -->');
  expect(start).toBeGreaterThan(0);
  const rows = page
    .slice(start)
    .split('\n')
    .slice(1)
    .filter((line, i, all) => line.startsWith('|') && all.slice(0, i).every((l) => l === '' || l.startsWith('|')))
    .slice(2); // the header and the separator
  return rows.map((row) => {
    const [sent, answer] = row
      .split('|')
      .slice(1, 3)
      .map((cell) => cell.trim());
    return {
      sent: /^`(.*)`$/.exec(sent)![1],
      accepted: answer.startsWith('accepted'),
      sameAs: /same key as `([^`]+)`/.exec(answer)?.[1],
    };
  });
}

@Injectable()
class Runs {
  readonly byKey = new Map<string, number>();
}

@Controller('orders')
class OrdersController {
  constructor(private readonly runs: Runs) {}

  @Post()
  @Idempotent({ required: true })
  create(@Headers('idempotency-key') key: string) {
    this.runs.byKey.set(key, (this.runs.byKey.get(key) ?? 0) + 1);
    return { ok: true };
  }
}

@Module({
  imports: [IdempotencyModule.forRoot(new MemoryStore())],
  controllers: [OrdersController],
  providers: [Runs],
})
class AppModule {}

const table = examples();

it('the table shows accepted and refused keys, among them a `:` and a `/`', () => {
  expect(table.filter((e) => e.accepted).length).toBeGreaterThanOrEqual(2);
  expect(table.some((e) => !e.accepted && e.sent.includes(':'))).toBe(true);
  expect(table.some((e) => !e.accepted && e.sent.includes('/'))).toBe(true);
});

describe.each(['express', 'fastify'] as const)('docs/http.md key examples on %s', (platform) => {
  let app: Awaited<ReturnType<typeof NestFactory.create>>;
  let url: string;
  beforeAll(async () => {
    app = await NestFactory.create(AppModule, platform === 'express' ? new ExpressAdapter() : new FastifyAdapter(), {
      logger: false,
    });
    await app.listen(0, '127.0.0.1');
    url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  });
  afterAll(() => app.close());

  const post = (key: string) => fetch(`${url}/orders`, { method: 'POST', headers: { 'Idempotency-Key': key } });

  it.each(table.map((e) => [e.sent, e] as const))('%s', async (_sent, example) => {
    const runs = app.get(Runs).byKey;
    const before = [...runs.values()].reduce((a, b) => a + b, 0);
    const res = await post(example.sent);
    const ran = [...runs.values()].reduce((a, b) => a + b, 0) - before;
    if (example.accepted) {
      expect(res.status).toBe(201);
      expect(res.headers.get('idempotent-replayed')).toBeNull();
      expect(ran).toBe(1);
      if (example.sameAs !== undefined) {
        const again = await post(example.sameAs);
        expect(again.status).toBe(201);
        expect(again.headers.get('idempotent-replayed')).toBe('true');
      }
    } else {
      expect(res.status).toBe(400);
      expect(((await res.json()) as { type: string }).type).toBe(IDEMPOTENCY_PROBLEM_TYPES.keyInvalid);
      expect(ran).toBe(0);
    }
  });
});

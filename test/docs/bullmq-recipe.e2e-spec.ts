/**
 * docs/service.md's BullMQ recipe, run as printed (the block marked `bullmq-consumer`, compiled
 * from the page) in a real Nest application context with real BullMQ workers on a real
 * valkey-server, which also holds the idempotency store:
 * - the same payload enqueued twice, the first attempt failing after the booking: both jobs
 *   complete, with one booking;
 * - another payload under the same shipmentId fails at once (UnrecoverableError: one attempt of 3);
 * - the pitfall the page warns of: the whole Job as `request` makes its retry `key-reused`.
 */
import { BullModule, getQueueToken, Processor, WorkerHost } from '@nestjs/bullmq';
import { type INestApplicationContext, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { Job, Queue } from 'bullmq';
import { IdempotencyService } from '../../lib';
import { eventually } from '../support/eventually';
import { describeValkey, startStandalone, type StandaloneServer } from '../support/valkey-server';
import { materialize } from './snippets';

interface Recipe {
  ShipmentsModule: new () => object;
  Carrier: new () => { book: (order: object) => Promise<{ trackingId: string }> };
  Notifier: new () => { shipped: (orderId: string, trackingId: string) => Promise<void> };
}

/** What the page warns against: `request: job` (a retry's Job differs from the first attempt's). */
@Processor('pitfall')
class WholeJobConsumer extends WorkerHost {
  booked = 0;
  constructor(private readonly idempotency: IdempotencyService) {
    super();
  }

  async process(job: Job<{ id: string }>) {
    await this.idempotency.run(job.data.id, () => ++this.booked, { request: job, scope: 'pitfall' });
    if (job.attemptsMade === 0) throw new Error('failed after the side effect');
  }
}

const finished = async (queue: Queue, id: string) => {
  let job = await queue.getJob(id);
  await eventually(async () => ['completed', 'failed'].includes(await job!.getState()), `job ${id} to finish`);
  job = await queue.getJob(id);
  return { job: job!, state: await job!.getState() };
};

describeValkey('docs/service.md: the BullMQ recipe as printed', () => {
  let server: StandaloneServer;
  let app: INestApplicationContext;
  let recipe: Recipe;

  beforeAll(async () => {
    server = await startStandalone();
    // The recipe's module reads these when it is loaded.
    process.env.VALKEY_HOST = server.host;
    process.env.VALKEY_PORT = String(server.port);
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    recipe = require(materialize('bullmq-consumer')) as Recipe;
    @Module({
      imports: [recipe.ShipmentsModule, BullModule.registerQueue({ name: 'pitfall' })],
      providers: [WholeJobConsumer],
    })
    class TestModule {}
    app = await NestFactory.createApplicationContext(TestModule, { logger: false });
  }, 30_000);

  afterAll(async () => {
    await app?.close();
    await server?.stop();
    delete process.env.VALKEY_HOST;
    delete process.env.VALKEY_PORT;
  });

  it('the same payload twice, the first attempt failing after the booking: one booking, both jobs done', async () => {
    const book = jest.spyOn(app.get(recipe.Carrier), 'book');
    const shipped = jest
      .spyOn(app.get(recipe.Notifier), 'shipped')
      .mockRejectedValueOnce(new Error('mail server down'));
    const queue = app.get<Queue>(getQueueToken('shipments'));
    const data = { shipmentId: 'shp_1', orderId: 'ord_1', address: '1 Quay Street' };
    const options = { attempts: 3, backoff: { type: 'fixed', delay: 50 } };
    const [a, b] = await Promise.all([queue.add('ship', data, options), queue.add('ship', data, options)]);

    const results = [await finished(queue, a.id!), await finished(queue, b.id!)];
    expect(results.map((r) => r.state)).toEqual(['completed', 'completed']);
    expect(book).toHaveBeenCalledTimes(1);
    expect(results.map((r) => r.job.returnvalue)).toEqual([{ trackingId: 'trk_shp_1' }, { trackingId: 'trk_shp_1' }]);
    // One notification failed and was retried with its job: 3 calls, 2 successes.
    expect(shipped).toHaveBeenCalledTimes(3);
    expect(results.map((r) => r.job.attemptsMade).sort()).toEqual([1, 2]);

    // Another payload under the same shipmentId: failed at once, not retried, nothing booked.
    const other = await queue.add('ship', { ...data, address: '2 Other Road' }, options);
    const refused = await finished(queue, other.id!);
    expect(refused.state).toBe('failed');
    expect(refused.job.attemptsMade).toBe(1);
    expect(refused.job.failedReason).toMatch(/already used for a different request/);
    expect(book).toHaveBeenCalledTimes(1);
  });

  it('the pitfall: the whole Job as request makes the retry key-reused', async () => {
    const queue = app.get<Queue>(getQueueToken('pitfall'));
    const job = await queue.add('book', { id: 'pit_1' }, { attempts: 2, backoff: { type: 'fixed', delay: 50 } });
    const result = await finished(queue, job.id!);
    expect(result.state).toBe('failed');
    expect(result.job.attemptsMade).toBe(2);
    expect(result.job.failedReason).toMatch(/already used for a different request/);
    expect(app.get(WholeJobConsumer).booked).toBe(1);
  });
});

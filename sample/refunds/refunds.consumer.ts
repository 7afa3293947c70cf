import { Injectable, Logger, OnModuleInit } from '@nestjs/common';
import { IdempotencyService } from '../../lib';
import { PaymentsService } from '../payments/payments.service';
import { RefundQueue, type RefundRequested } from './refund-queue';

/**
 * A queue consumer: each refund message runs the refund at most once, however many times the
 * broker delivers it. A duplicate delivered while the first is still refunding waits for it
 * (`waitMs`) and then acknowledges with the stored result.
 */
@Injectable()
export class RefundsConsumer implements OnModuleInit {
  private readonly logger = new Logger('Refunds');

  constructor(
    private readonly queue: RefundQueue,
    private readonly idempotency: IdempotencyService,
    private readonly payments: PaymentsService,
  ) {}

  onModuleInit(): void {
    this.queue.subscribe((message) => this.handle(message));
  }

  async handle(message: RefundRequested): Promise<void> {
    const { value, replayed } = await this.idempotency.run(
      message.id,
      () => this.payments.refund(message.paymentId, message.amount),
      { request: message, scope: 'refunds', waitMs: 10_000 },
    );
    this.logger.log(`${message.id}: ${replayed ? 'duplicate delivery, already refunded' : 'refunded'} (${value.id})`);
  }
}

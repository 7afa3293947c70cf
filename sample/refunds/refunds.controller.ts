import { Body, Controller, Get, HttpCode, Post } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { PaymentsService } from '../payments/payments.service';
import { RefundQueue } from './refund-queue';

@Controller('refunds')
export class RefundsController {
  constructor(
    private readonly queue: RefundQueue,
    private readonly payments: PaymentsService,
  ) {}

  /** Publishes a refund request; the (simulated) broker delivers it twice, at once. */
  @Post()
  @HttpCode(202)
  async request(@Body() body: { paymentId: string; amount: number }): Promise<{ messageId: string }> {
    const messageId = `msg_${randomUUID()}`;
    await this.queue.publish({ id: messageId, paymentId: body.paymentId, amount: body.amount });
    return { messageId };
  }

  @Get('stats')
  stats(): { deliveries: number; refunds: number } {
    return { deliveries: this.queue.deliveries, refunds: this.payments.refunds };
  }
}

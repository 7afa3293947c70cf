import { BadRequestException, Injectable, NotFoundException } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { CreatePaymentDto } from './create-payment.dto';

export interface Payment {
  id: string;
  amount: number;
  currency: string;
  status: 'captured';
  createdAt: string;
}

/** Stands in for a payment provider: every call to `charge` moves money, so it must not run twice. */
@Injectable()
export class PaymentsService {
  private readonly payments = new Map<string, Payment>();
  /** How many charges really happened (the sample's proof of at-most-once). */
  charges = 0;

  async charge(dto: CreatePaymentDto): Promise<Payment> {
    if (!Number.isInteger(dto?.amount) || dto.amount <= 0 || typeof dto.currency !== 'string') {
      throw new BadRequestException('amount must be a positive integer and currency a string');
    }
    // A slow provider call, so a concurrent duplicate can be seen getting 409.
    await new Promise((resolve) => setTimeout(resolve, Number(process.env.CHARGE_DELAY_MS ?? 500)));
    this.charges++;
    const payment: Payment = {
      id: `pay_${randomUUID()}`,
      amount: dto.amount,
      currency: dto.currency,
      status: 'captured',
      createdAt: new Date().toISOString(),
    };
    this.payments.set(payment.id, payment);
    return payment;
  }

  /** Refunds made (the queue consumer's proof of at-most-once). */
  refunds = 0;

  /** Moves money back: must not run twice for one refund request. */
  async refund(paymentId: string, amount: number): Promise<{ id: string; paymentId: string; amount: number }> {
    await new Promise((resolve) => setTimeout(resolve, Number(process.env.CHARGE_DELAY_MS ?? 500)));
    this.refunds++;
    return { id: `re_${randomUUID()}`, paymentId, amount };
  }

  find(id: string): Payment {
    const payment = this.payments.get(id);
    if (!payment) throw new NotFoundException(`payment ${id} not found`);
    return payment;
  }
}

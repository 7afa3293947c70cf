import { BadRequestException, Inject, Injectable, NotFoundException } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import type { Pool, PoolClient } from 'pg';
import { DATABASE } from '../database';
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
  /** How many charges really happened in this process (the sample's proof of at-most-once). */
  charges = 0;

  /** The PostgreSQL pool when DATABASE_URL is set: payments are then rows of `payments`. */
  constructor(@Inject(DATABASE) private readonly database: Pool | null) {}

  /**
   * Charges. With `tx` (the idempotency transaction, PostgreSQL mode) the payment is a row written
   * through it: it commits with the stored response, or not at all.
   */
  async charge(dto: CreatePaymentDto, tx?: PoolClient): Promise<Payment> {
    if (!Number.isInteger(dto?.amount) || dto.amount <= 0 || typeof dto.currency !== 'string') {
      throw new BadRequestException('amount must be a positive integer and currency a string');
    }
    const payment: Payment = {
      id: `pay_${randomUUID()}`,
      amount: dto.amount,
      currency: dto.currency,
      status: 'captured',
      createdAt: new Date().toISOString(),
    };
    if (tx) {
      // Written first, committed last: if anything below fails (or the process dies), it is rolled back.
      await tx.query('INSERT INTO payments (id, amount, currency, created_at) VALUES ($1, $2, $3, $4)', [
        payment.id,
        payment.amount,
        payment.currency,
        payment.createdAt,
      ]);
    }
    // A slow provider call, so a concurrent duplicate can be seen getting 409.
    await new Promise((resolve) => setTimeout(resolve, Number(process.env.CHARGE_DELAY_MS ?? 500)));
    this.charges++;
    if (!tx) this.payments.set(payment.id, payment);
    return payment;
  }

  /** How many charges happened: rows of `payments` with a database, else this process's count. */
  async stats(): Promise<{ charges: number }> {
    if (!this.database) return { charges: this.charges };
    const { rows } = await this.database.query<{ n: number }>('SELECT count(*)::int AS n FROM payments');
    return { charges: rows[0].n };
  }

  /** Refunds made (the queue consumer's proof of at-most-once). */
  refunds = 0;

  /** Moves money back: must not run twice for one refund request. */
  async refund(paymentId: string, amount: number): Promise<{ id: string; paymentId: string; amount: number }> {
    await new Promise((resolve) => setTimeout(resolve, Number(process.env.CHARGE_DELAY_MS ?? 500)));
    this.refunds++;
    return { id: `re_${randomUUID()}`, paymentId, amount };
  }

  async find(id: string): Promise<Payment> {
    const payment = this.database ? await this.findStored(this.database, id) : this.payments.get(id);
    if (!payment) throw new NotFoundException(`payment ${id} not found`);
    return payment;
  }

  private async findStored(database: Pool, id: string): Promise<Payment | undefined> {
    const { rows } = await database.query<{ id: string; amount: number; currency: string; created_at: Date }>(
      'SELECT id, amount, currency, created_at FROM payments WHERE id = $1',
      [id],
    );
    if (rows.length === 0) return undefined;
    const { amount, currency, created_at } = rows[0];
    return { id, amount, currency, status: 'captured', createdAt: created_at.toISOString() };
  }
}

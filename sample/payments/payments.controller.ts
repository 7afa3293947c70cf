import { Body, Controller, Get, Param, Post } from '@nestjs/common';
import type { PoolClient } from 'pg';
import { Idempotent, IdempotencyTransaction } from '../../lib';
import { CreatePaymentDto } from './create-payment.dto';
import { Payment, PaymentsService } from './payments.service';

/** The read routes both payment controllers share. */
abstract class PaymentReads {
  protected abstract readonly payments: PaymentsService;

  @Get('stats')
  stats(): Promise<{ charges: number }> {
    return this.payments.stats();
  }

  @Get(':id')
  find(@Param('id') id: string): Promise<Payment> {
    return this.payments.find(id);
  }
}

@Controller('payments')
export class PaymentsController extends PaymentReads {
  constructor(protected readonly payments: PaymentsService) {
    super();
  }

  /** Safe to retry: send the same Idempotency-Key and the charge happens once. */
  @Post()
  @Idempotent({ required: true })
  create(@Body() dto: CreatePaymentDto): Promise<Payment> {
    return this.payments.charge(dto);
  }
}

/**
 * The same route with a PostgreSQL store (DATABASE_URL): the payment row is written through the
 * transaction the stored response commits in, so it is written exactly once, even if the process
 * dies between the write and the response.
 */
@Controller('payments')
export class LedgerPaymentsController extends PaymentReads {
  constructor(protected readonly payments: PaymentsService) {
    super();
  }

  @Post()
  @Idempotent({ required: true })
  create(@Body() dto: CreatePaymentDto, @IdempotencyTransaction() tx: PoolClient | undefined): Promise<Payment> {
    return this.payments.charge(dto, tx);
  }
}

import { Body, Controller, Get, Param, Post } from '@nestjs/common';
import { Idempotent } from '../../lib';
import { CreatePaymentDto } from './create-payment.dto';
import { Payment, PaymentsService } from './payments.service';

@Controller('payments')
export class PaymentsController {
  constructor(private readonly payments: PaymentsService) {}

  /** Safe to retry: send the same Idempotency-Key and the charge happens once. */
  @Post()
  @Idempotent({ required: true })
  create(@Body() dto: CreatePaymentDto): Promise<Payment> {
    return this.payments.charge(dto);
  }

  @Get('stats')
  stats(): { charges: number } {
    return { charges: this.payments.charges };
  }

  @Get(':id')
  find(@Param('id') id: string): Payment {
    return this.payments.find(id);
  }
}

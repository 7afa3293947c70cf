import { Module } from '@nestjs/common';
import { PaymentsServiceModule } from '../payments/payments.module';
import { RefundQueue } from './refund-queue';
import { RefundsConsumer } from './refunds.consumer';
import { RefundsController } from './refunds.controller';

@Module({
  imports: [PaymentsServiceModule],
  controllers: [RefundsController],
  providers: [RefundQueue, RefundsConsumer],
})
export class RefundsModule {}

import { DynamicModule, Module } from '@nestjs/common';
import { LedgerPaymentsController, PaymentsController } from './payments.controller';
import { PaymentsService } from './payments.service';

/** The payments service alone (the refunds consumer uses it too). */
@Module({ providers: [PaymentsService], exports: [PaymentsService] })
export class PaymentsServiceModule {}

@Module({})
export class PaymentsModule {
  /**
   * The payments route: with a database (DATABASE_URL), the one that writes the payment through
   * the idempotency transaction; else the one that calls the in-memory provider.
   */
  static register(database = Boolean(process.env.DATABASE_URL)): DynamicModule {
    return {
      module: PaymentsModule,
      imports: [PaymentsServiceModule],
      controllers: [database ? LedgerPaymentsController : PaymentsController],
    };
  }
}

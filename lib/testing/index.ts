// The test kit, `nestjs-idempotent/testing`: for testing code that uses idempotency, and stores.
export { AtMostOnceLedger } from './at-most-once-ledger';
export { FaultyStore } from './faulty-store';
export type { StoreOperation } from './faulty-store';

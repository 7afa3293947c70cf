// The test kit, `nestjs-idempotent/testing`: for testing code that uses idempotency, and stores.
export { AtMostOnceLedger } from './at-most-once-ledger';
export { FaultyStore } from './faulty-store';
export type { StoreOperation } from './faulty-store';
export { storeContract, StoreContractError } from './store-contract';
export type { MakeStore, StoreContractOptions, StoreFixture } from './store-contract';

// A consumer of the packed package: it touches every export of `nestjs-idempotent` and
// `nestjs-idempotent/testing`, and is compiled with strict, skipLibCheck: false, under
// moduleResolution node10, node16 and bundler (test/package/check.sh), also in a project that has
// only the required peers installed: so it imports no optional peer (usage-ioredis.ts does, for
// the projects that install ioredis). test/package/public-api.spec.ts checks that every export is
// named here.
import 'reflect-metadata';
import { ArgumentsHost, Body, Catch, Controller, ExceptionFilter, Injectable, Module, Post } from '@nestjs/common';
import { APP_INTERCEPTOR } from '@nestjs/core';
import {
  type AnyEntry,
  CachedResponse,
  type CachedResponseInit,
  type CachedResponseJSON,
  type CacheErrorsOption,
  ClaimBuilder,
  type ClaimedResult,
  type CompletedEntry,
  CompletionFailedError,
  defaultScope,
  DefaultFingerprintStrategy,
  type EntryState,
  type ExecuteResult,
  type ExistsResult,
  FencedOutcome,
  FencingToken,
  type FencingTokenJSON,
  Fingerprint,
  FingerprintedClaim,
  type FingerprintFunction,
  type FingerprintStrategy,
  IDEMPOTENCY_GRAPHQL_ERROR_CODES,
  IDEMPOTENCY_KEY_HEADER,
  IDEMPOTENCY_PROBLEM_TYPES,
  IDEMPOTENT_REPLAYED_HEADER,
  IdempotencyClaim,
  IdempotencyTransaction,
  type IdempotencyTransactionClient,
  type StoreTransaction,
  type TransactionalStore,
  IdempotencyConflictError,
  type IdempotencyConflictReason,
  IdempotencyDecodeError,
  IdempotencyEntry,
  type IdempotencyEntryJSON,
  IdempotencyError,
  type IdempotencyEvent,
  type IdempotencyEventHandler,
  IdempotencyHealthIndicator,
  type IdempotencyHealthOptions,
  type IdempotencyHealthResult,
  IdempotencyInFlightException,
  IdempotencyInterceptor,
  IdempotencyKey,
  IdempotencyKeyError,
  type IdempotencyKeyErrorCode,
  IdempotencyKeyInvalidException,
  IdempotencyKeyMissingException,
  IdempotencyKeyReusedException,
  IdempotencyModule,
  type IdempotencyModuleAsyncOptions,
  type IdempotencyModuleConfig,
  type IdempotencyModuleOptions,
  type IdempotencyModuleRootOptions,
  type IdempotencyOptions,
  type IdempotencyOptionsFactory,
  type IdempotencyOutcome,
  IdempotencyProblemException,
  type IdempotencyRequest,
  type IdempotencyRunOptions,
  type IdempotencyRunResult,
  type Jsonified,
  IdempotencyService,
  IdempotencyStore,
  IdempotencyStoreError,
  IdempotencyStoreUnavailableException,
  Idempotent,
  type InsertResult,
  LeaseLostError,
  MAX_KEY_BYTES,
  MemoryStore,
  type MemoryStoreOptions,
  PROBLEM_CONTENT_TYPE,
  type ProblemBodyRenderer,
  type ProblemDetails,
  type ProcessingEntry,
  type ResolvedIdempotencyOptions,
  type ScopeFunction,
  type ServerCheck,
  type ServerNodeCheck,
  type SideEffect,
  StoreDecodeError,
  StoreDurabilityError,
  StoreClosedError,
  StoreFullError,
  IdempotencyValueTooLargeError,
  SealedRecordError,
  IdempotencyAdmin,
  IdempotencyAdminKeyOptions,
  IdempotencyAdminReleaseOptions,
  IdempotencyKeyInspection,
  StoreKeyInfo,
  IdempotencyEncryptionKey,
  IdempotencyEncryptionOptions,
  storeKeyFor,
  StoreTimeoutError,
  TELEMETRY_ATTRIBUTES,
  TELEMETRY_NAMES,
  type PostgresPool,
  type PostgresPoolClient,
  type PostgresQuery,
  type PostgresQueryResult,
  PostgresStore,
  type PostgresStoreOptions,
  type PostgresTableOptions,
  postgresMigrationSql,
  IDEMPOTENCY_DIAGNOSTICS_CHANNELS,
  type ValkeyClient,
  type ValkeyDurabilityOptions,
  type ValkeyNode,
  ValkeyStore,
  type ValkeyStoreOptions,
} from 'nestjs-idempotent';
import {
  AtMostOnceLedger,
  FaultyStore,
  type MakeStore,
  storeContract,
  StoreContractError,
  type StoreContractOptions,
  type StoreFixture,
  type StoreOperation,
} from 'nestjs-idempotent/testing';

// Values of the core.
const strategy: FingerprintStrategy = new DefaultFingerprintStrategy();
const fingerprint: Fingerprint = strategy.compute('POST /charges', '{}');
const key = new IdempotencyKey('order-1').scoped('tenant-a');
const storeKey: IdempotencyKey = storeKeyFor(IdempotencyKey.default(), 'user-7');
const processing: ProcessingEntry = new IdempotencyEntry(fingerprint, 10_000);
const init: CachedResponseInit = { statusCode: 201, body: '{}', metadata: { 'content-type': 'application/json' } };
const response = new CachedResponse(init);
const responseJson: CachedResponseJSON = response.toJSON();
const completed: CompletedEntry = processing.complete(response);
const any: AnyEntry = completed;
const state: EntryState = any.state;
const entryJson: IdempotencyEntryJSON = any.toJSON();
const token = new FencingToken(1n);
const tokenJson: FencingTokenJSON = token.toJSON();
const outcome: FencedOutcome = FencedOutcome.Applied;
const limit: number = MAX_KEY_BYTES;
const codes: IdempotencyKeyErrorCode[] = ['EMPTY_KEY', 'KEY_TOO_LONG', 'INVALID_KEY', 'EMPTY_SCOPE', 'INVALID_SCOPE'];
const reasons: IdempotencyConflictReason[] = ['key-reused', 'in-flight'];
const errors: Error[] = [
  new IdempotencyError('x'),
  new IdempotencyKeyError('EMPTY_KEY', 'x'),
  new IdempotencyStoreError('x'),
  new StoreDecodeError('x'),
  new StoreFullError('x', { maxBytes: 1 }),
  new StoreClosedError('memory', 'tryInsert'),
  new IdempotencyValueTooLargeError(2_000_000, 1_048_576),
  new SealedRecordError('x'),
  new StoreTimeoutError('claim', 1000),
  new StoreDurabilityError('claim', { asked: 1, acked: 0 }, { timeoutMs: 100 }),
  new IdempotencyDecodeError('x'),
  new IdempotencyConflictError('in-flight'),
  new CompletionFailedError('x'),
  new LeaseLostError('unreachable'),
];

// Stores and the builder.
const memoryOptions: MemoryStoreOptions = { maxBytes: 64 * 1024 * 1024, whenFull: 'refuse' };
const memory: IdempotencyStore = new MemoryStore(memoryOptions);
// An ioredis `Redis` or `Cluster` (usage-ioredis.ts passes real ones); declared here, as a project
// without ioredis has no such value.
declare const valkeyClient: ValkeyClient;
const valkeyOptions: ValkeyStoreOptions = { prefix: 'idem:', commandTimeoutMs: 500 };
const valkey = new ValkeyStore(valkeyClient, valkeyOptions);
const durability: ValkeyDurabilityOptions = { replicas: 1, aof: false, timeoutMs: 200 };
const durable = new ValkeyStore(valkeyClient, { ...valkeyOptions, commandTimeoutMs: 1_000, durability });
async function storeApi(store: IdempotencyStore): Promise<void> {
  const result: InsertResult = await store.tryInsert(key, new IdempotencyEntry(fingerprint, 10_000));
  if (result.kind === 'claimed') {
    const claimed: ClaimedResult = result;
    await store.complete(key, claimed.entry.complete(response), claimed.fencingToken, 60_000);
  } else {
    const exists: ExistsResult = result;
    void exists.entry;
  }
  const builder: ClaimBuilder = store.claim(key, 10_000);
  const claim: FingerprintedClaim = builder.fingerprint('POST /charges', '{}');
  const sideEffect: SideEffect = async (fencingToken, signal) => {
    void signal;
    return new CachedResponse({ statusCode: 201, body: fencingToken.toString() });
  };
  const executed: ExecuteResult = await claim.executeOrReplay(60_000, sideEffect);
  void executed;
  const check: ServerCheck = await valkey.checkServer();
  const nodes: readonly ServerNodeCheck[] = check.nodes;
  const replicas: number | undefined = nodes[0]?.connectedReplicas;
  try {
    await durable.tryInsert(key, new IdempotencyEntry(fingerprint, 10_000));
  } catch (error) {
    if (error instanceof StoreDurabilityError) void [error.operation, error.asked, error.acked, error.aof, replicas];
  }
  const node: ValkeyNode | undefined = valkeyClient.nodes?.('master')[0];
  void [nodes, node];
}

// The Nest module, decorators, options.
const scope: ScopeFunction = (req: IdempotencyRequest) => defaultScope(req) ?? req.headers['x-tenant'];
const fingerprintFn: FingerprintFunction = () => fingerprint;
const cacheErrors: CacheErrorsOption = [409, 422];
const problemBody: ProblemBodyRenderer = (problem: ProblemDetails) => ({ error: { code: problem.type } });
const routeOptions: IdempotencyOptions = {
  required: true,
  scope,
  cacheErrors,
  problemBody,
  waitMs: 1_000,
  replayHeaders: false,
  maxKeyLength: 512,
};
const sealKey: IdempotencyEncryptionKey = { id: 'k1', key: Buffer.alloc(32) };
const encryption: IdempotencyEncryptionOptions = { keys: [sealKey] };
const moduleOptions: IdempotencyModuleOptions = {
  store: memory,
  ttlMs: 60_000,
  fingerprint: fingerprintFn,
  encryption,
};
const rootOptions: IdempotencyModuleRootOptions = { ...moduleOptions, isGlobal: true };

@Injectable()
class IdempotencyConfig implements IdempotencyOptionsFactory {
  createIdempotencyOptions(): IdempotencyModuleConfig {
    return { store: new MemoryStore(), onEvent: (event: IdempotencyEvent) => void event.type };
  }
}
const asyncOptions: IdempotencyModuleAsyncOptions = { useClass: IdempotencyConfig };

@Controller('payments')
class PaymentsController {
  constructor(
    private readonly idempotency: IdempotencyService,
    private readonly health: IdempotencyHealthIndicator,
  ) {}

  @Post()
  @Idempotent(routeOptions)
  async create(@Body() dto: { amount: number }, @IdempotencyClaim() claim: IdempotencyClaim | undefined) {
    const run: IdempotencyRunOptions = { request: dto, waitMs: 100 };
    const result: IdempotencyRunResult<Jsonified<number>> = await this.idempotency.run(
      claim?.key ?? 'k',
      () => dto.amount,
      run,
    );
    const healthOptions: IdempotencyHealthOptions = { timeoutMs: 500 };
    const health: IdempotencyHealthResult = await this.health.isHealthy('idempotency', healthOptions);
    return { result, health, header: IDEMPOTENCY_KEY_HEADER, replayed: IDEMPOTENT_REPLAYED_HEADER };
  }
}

class StrictInterceptor extends IdempotencyInterceptor {
  protected override getScope(_context: never, options: ResolvedIdempotencyOptions): string | undefined {
    return options.required ? 'strict' : undefined;
  }
}

@Catch(IdempotencyProblemException)
class ProblemFilter implements ExceptionFilter {
  catch(exception: IdempotencyProblemException, host: ArgumentsHost): void {
    const known = [
      IdempotencyKeyMissingException,
      IdempotencyKeyInvalidException,
      IdempotencyInFlightException,
      IdempotencyKeyReusedException,
      IdempotencyStoreUnavailableException,
    ].some((type) => exception instanceof type);
    void [known, host, exception.problem.type === IDEMPOTENCY_PROBLEM_TYPES.inFlight, PROBLEM_CONTENT_TYPE];
  }
}

/** A GraphQL client branching on the codes of refused mutations. */
export function isRetryableGraphQLError(error: { extensions?: { code?: unknown } }): boolean {
  const code: string = IDEMPOTENCY_GRAPHQL_ERROR_CODES.inFlight;
  return error.extensions?.code === code || error.extensions?.code === IDEMPOTENCY_GRAPHQL_ERROR_CODES.storeUnavailable;
}

@Module({
  imports: [IdempotencyModule.forRoot(rootOptions), IdempotencyModule.forRootAsync(asyncOptions)],
  controllers: [PaymentsController],
  providers: [{ provide: APP_INTERCEPTOR, useClass: StrictInterceptor }],
})
export class AppModule {}

// Observability.
const handler: IdempotencyEventHandler = (event) => {
  const type: IdempotencyOutcome = event.type;
  void [type, TELEMETRY_NAMES.requestSpan, TELEMETRY_ATTRIBUTES.outcome];
  const channelName: string = IDEMPOTENCY_DIAGNOSTICS_CHANNELS.replayed;
  void channelName;
};

// The test kit.
const faulty = new FaultyStore(new MemoryStore());
const operation: StoreOperation = 'complete';
faulty.failNext(operation).delayNext('get', 10).loseReplyNext('tryInsert');
const ledger = new AtMostOnceLedger();
ledger.record('k');
ledger.assertAtMostOnce();
const makeStore: MakeStore = (): StoreFixture => ({ store: new MemoryStore(), close: () => undefined });
const runner: StoreContractOptions = {
  describe: (name: string, body: () => void) => void [name, body],
  it: (name: string, body: () => Promise<void>) => void [name, body],
  name: 'MemoryStore',
};
storeContract(makeStore, runner);
const contractFailure: typeof StoreContractError = StoreContractError;

export const used = [
  storeKey,
  responseJson,
  state,
  entryJson,
  tokenJson,
  outcome,
  limit,
  codes,
  reasons,
  errors,
  storeApi,
  ProblemFilter,
  handler,
  moduleOptions,
  contractFailure,
];

/** A store with transactions, as docs/custom-stores.md describes it (types only). */
export const transactionalShape = (store: TransactionalStore): Promise<StoreTransaction> => store.beginTransaction();

export class TransactionalController {
  @Idempotent()
  charge(@IdempotencyTransaction() tx: IdempotencyTransactionClient | undefined) {
    return tx?.query('SELECT 1', []);
  }
}

// PostgresStore, on a node-postgres Pool (declared here: a project without pg has none; pg's own
// `Pool` is checked to fit in test/postgres).
declare const pgPool: PostgresPool;
const tableOptions: PostgresTableOptions = { table: 'idempotency_keys', schema: 'public' };
const postgresOptions: PostgresStoreOptions = {
  ...tableOptions,
  sweepIntervalMs: 60_000,
  sweepBatch: 1_000,
  commitCheckTimeoutMs: 5_000,
  onWarning: (message: string) => void message,
};
export const postgres: IdempotencyStore & TransactionalStore = new PostgresStore(pgPool, postgresOptions);
export const migrationSql: string = postgresMigrationSql(tableOptions);
export async function postgresApi(store: PostgresStore): Promise<number> {
  await store.migrate();
  const tx: StoreTransaction<PostgresPoolClient> = await store.beginTransaction();
  const query: PostgresQuery = { text: 'SELECT $1::int AS n', values: [1] };
  const result: PostgresQueryResult = await tx.client.query(query);
  await tx.rollback();
  return result.rows.length + (await store.sweep()) + store.table.length;
}

// An operator's view of keys (issue 20).
export async function operate(admin: IdempotencyAdmin, store: IdempotencyStore): Promise<void> {
  const whose: IdempotencyAdminKeyOptions = { scope: 42 };
  const release: IdempotencyAdminReleaseOptions = { ...whose, force: true };
  const seen: IdempotencyKeyInspection = await admin.inspect('k', whose);
  const token: FencingToken | undefined = seen.fencingToken;
  const left: number | undefined = seen.msLeft;
  const released: boolean = await admin.release('k', release);
  await admin.purge('k', { scope: 'alice' });
  const storeKey: IdempotencyKey = admin.storeKeyOf('k');
  const info: StoreKeyInfo | undefined = await store.inspect?.(storeKey);
  void [seen.state, seen.heldHere, token, left, released, info?.msLeft];
}

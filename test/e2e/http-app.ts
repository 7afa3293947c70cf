import {
  BadRequestException,
  BeforeApplicationShutdown,
  Body,
  CanActivate,
  ClassSerializerInterceptor,
  Controller,
  DynamicModule,
  ExecutionContext,
  Get,
  Header,
  Headers,
  HttpCode,
  Injectable,
  LoggerService,
  Module,
  Param,
  Post,
  Put,
  Query,
  Res,
  SerializeOptions,
  StreamableFile,
  Type,
  UseInterceptors,
} from '@nestjs/common';
import { NestFactory, Reflector } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { Exclude, Expose } from 'class-transformer';
import { Readable, Writable } from 'node:stream';
import { EMPTY, map, Observable, of, timer } from 'rxjs';
import {
  AnyEntry,
  CompletedEntry,
  FencedOutcome,
  FencingToken,
  IdempotencyKey,
  IdempotencyModule,
  IdempotencyModuleOptions,
  IdempotencyStore,
  Idempotent,
  InsertResult,
  ProcessingEntry,
} from '../../lib';
import { HttpClient } from './http-client';

export type Platform = 'express' | 'fastify';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Counts handler executions per idempotency key (or label), and holds slow handlers. */
@Injectable()
export class Executions {
  private readonly counts = new Map<string, number>();
  private readonly gates = new Map<string, { promise: Promise<void>; open: () => void }>();

  hit(label: string | undefined): number {
    const name = label ?? '(none)';
    const n = (this.counts.get(name) ?? 0) + 1;
    this.counts.set(name, n);
    return n;
  }

  count(label: string): number {
    return this.counts.get(label) ?? 0;
  }

  /** Resolves once `open(label)` is called. */
  gate(label: string): Promise<void> {
    return this.gateOf(label).promise;
  }

  open(label: string): void {
    this.gateOf(label).open();
  }

  /**
   * A handler's pause: until `open(hold)` when a hold label is given (a request held by the test,
   * e.g. past its lease, for as long as the test needs), else `ms` milliseconds.
   */
  pause(ms: string | undefined, hold: string | undefined): Promise<void> {
    return hold !== undefined ? this.gate(hold) : sleep(Number(ms ?? 0));
  }

  private gateOf(label: string) {
    let gate = this.gates.get(label);
    if (gate === undefined) {
      let open!: () => void;
      const promise = new Promise<void>((resolve) => (open = resolve));
      gate = { promise, open };
      this.gates.set(label, gate);
    }
    return gate;
  }
}

/**
 * Sets `request.user` from an `x-user` header, as an authentication guard would: `sub:<s>` gives
 * `{ sub }`, `userId:<u>` gives `{ userId, username }` (the shape of Nest's JWT guide), `name:<n>`
 * gives `{ username }` only (no id), anything else `{ id }`.
 */
class UserFromHeaderGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const req = context.switchToHttp().getRequest();
    const user = req.headers['x-user'];
    if (typeof user !== 'string') return true;
    const [kind, value] = user.includes(':') ? user.split(':', 2) : ['id', user];
    if (kind === 'sub') req.user = { sub: value };
    else if (kind === 'userId') req.user = { userId: Number(value), username: `user${value}` };
    else if (kind === 'name') req.user = { username: value };
    else req.user = { id: value };
    return true;
  }
}

/** A buffer every call of the shared-buffer route reuses (as a pooled serializer might). */
const sharedBuffer = Buffer.alloc(5);

type AnyResponse = {
  status(code: number): unknown;
  header(name: string, value: string): unknown;
};

@Controller('items')
export class ItemsController {
  constructor(private readonly executions: Executions) {}

  @Post()
  @Idempotent()
  @Header('Location', '/items/1')
  @Header('Cache-Control', 'no-store')
  @Header('X-Unlisted', 'not replayed')
  create(@Body() body: unknown, @Headers('idempotency-key') key: string) {
    return { n: this.executions.hit(key), echo: body ?? null };
  }

  @Put(':id')
  @Idempotent()
  update(@Param('id') id: string, @Body() body: unknown, @Headers('idempotency-key') key: string) {
    return { n: this.executions.hit(key), id, echo: body ?? null };
  }

  @Post('required')
  @Idempotent({ required: true })
  required(@Headers('idempotency-key') key: string) {
    return { n: this.executions.hit(key ?? 'required-without-key') };
  }

  @Post('gated')
  @Idempotent()
  async gated(@Headers('idempotency-key') key: string) {
    const n = this.executions.hit(key);
    await this.executions.gate(key);
    return { n };
  }

  @Post('sleep')
  @Idempotent()
  async sleep(
    @Query('ms') ms: string,
    @Headers('idempotency-key') key: string,
    @Headers('x-ms') headerMs?: string,
    @Headers('x-hold') hold?: string,
  ) {
    const n = this.executions.hit(key);
    // `x-ms` and `x-hold` are not part of the fingerprint: retries of one request can take different times.
    await this.executions.pause(headerMs ?? ms, hold);
    return { n };
  }

  @Post('sleep-observable')
  @Idempotent()
  sleepObservable(@Query('ms') ms: string, @Headers('idempotency-key') key: string): Observable<unknown> {
    const n = this.executions.hit(key);
    return timer(Number(ms)).pipe(map(() => ({ n })));
  }

  @Post('fail')
  @Idempotent()
  fail(@Headers('idempotency-key') key: string) {
    this.executions.hit(key);
    throw new Error('handler failed');
  }

  @Post('fail-cached')
  @Idempotent({ cacheErrors: [400] })
  failCached(@Headers('idempotency-key') key: string) {
    const n = this.executions.hit(key);
    throw new BadRequestException({ message: 'rejected', n });
  }

  @Post('fail-cached-slow')
  @Idempotent({ cacheErrors: [400] })
  async failCachedSlow(@Headers('idempotency-key') key: string, @Headers('x-ms') ms: string) {
    const n = this.executions.hit(key);
    await sleep(Number(ms ?? 0));
    throw new BadRequestException({ message: 'rejected', n });
  }

  /** The first run for a key throws a cached 400 after `x-ms` (or `x-hold`); later runs answer 201. */
  @Post('fail-cached-first')
  @Idempotent({ cacheErrors: [400] })
  async failCachedFirst(
    @Headers('idempotency-key') key: string,
    @Headers('x-ms') ms?: string,
    @Headers('x-hold') hold?: string,
  ) {
    const n = this.executions.hit(key);
    await this.executions.pause(ms, hold);
    if (n === 1) throw new BadRequestException({ message: 'first run fails', n });
    return { n };
  }

  /** The first run for a key throws (uncached: the key is released) after `x-ms` (or `x-hold`); later runs answer 201. */
  @Post('fail-first')
  @Idempotent()
  async failFirst(
    @Headers('idempotency-key') key: string,
    @Headers('x-ms') ms?: string,
    @Headers('x-hold') hold?: string,
  ) {
    const n = this.executions.hit(key);
    await this.executions.pause(ms, hold);
    if (n === 1) throw new Error('first run fails');
    return { n };
  }

  /** Sets headers of its own (a cookie among them) before it sleeps `x-ms` (or waits for `x-hold`). */
  @Post('sleep-cookie')
  @Idempotent()
  async sleepCookie(
    @Res({ passthrough: true }) res: AnyResponse,
    @Headers('idempotency-key') key: string,
    @Headers('x-ms') ms?: string,
    @Headers('x-hold') hold?: string,
  ) {
    const n = this.executions.hit(key);
    res.header('Set-Cookie', `run=${n}`);
    res.header('X-Handler', `run-${n}`);
    await this.executions.pause(ms, hold);
    return { n };
  }

  /** Returns the same Buffer object every time, filled with the request body's `fill` text. */
  @Post('shared-buffer')
  @Idempotent()
  sharedBuffer(@Body() body: { fill: string }, @Headers('idempotency-key') key: string) {
    this.executions.hit(key);
    sharedBuffer.write(body.fill.padEnd(5).slice(0, 5));
    return sharedBuffer;
  }

  @Post('fail-uncached')
  @Idempotent({ cacheErrors: [400] })
  failUncached(@Headers('idempotency-key') key: string) {
    this.executions.hit(key);
    throw new Error('not a 400');
  }

  @Post('fail-cached-all')
  @Idempotent({ cacheErrors: true })
  failCachedAll(@Headers('idempotency-key') key: string) {
    this.executions.hit(key);
    throw new Error('cached anyway');
  }

  @Post('large')
  @Idempotent({ maxResponseBytes: 1024 })
  large(@Headers('idempotency-key') key: string) {
    return { n: this.executions.hit(key), filler: 'x'.repeat(5000) };
  }

  @Post('replay-headers')
  @Idempotent({ replayHeaders: ['X-Extra', 'Set-Cookie'] })
  @Header('X-Extra', 'extra')
  @Header('Set-Cookie', 'session=secret; HttpOnly')
  replayHeaders(@Headers('idempotency-key') key: string) {
    return { n: this.executions.hit(key) };
  }

  @Post('passthrough')
  @Idempotent()
  passthrough(@Res({ passthrough: true }) res: AnyResponse, @Headers('idempotency-key') key: string) {
    res.status(207);
    res.header('Location', '/items/passthrough');
    res.header('ETag', '"v1"');
    return { n: this.executions.hit(key) };
  }

  @Post('http-code')
  @Idempotent()
  @HttpCode(202)
  httpCode(@Headers('idempotency-key') key: string) {
    return { n: this.executions.hit(key) };
  }

  @Post('no-content')
  @Idempotent()
  @HttpCode(204)
  noContent(@Headers('idempotency-key') key: string): void {
    this.executions.hit(key);
  }

  @Get('read')
  @Idempotent()
  read(@Headers('idempotency-key') key: string) {
    return { n: this.executions.hit(key) };
  }

  @Post('custom-scope')
  @Idempotent({ scope: (req) => req.headers['x-tenant'] })
  customScope(@Headers('idempotency-key') key: string) {
    return { n: this.executions.hit(key) };
  }

  @Post('unscoped')
  @Idempotent({ scope: false })
  unscoped(@Headers('idempotency-key') key: string) {
    return { n: this.executions.hit(key) };
  }

  @Post('custom-header')
  @Idempotent({ headerName: 'X-Request-Id' })
  customHeader(@Headers('x-request-id') key: string) {
    return { n: this.executions.hit(key) };
  }
}

/** Result kinds, each returned by a bare route here and an idempotent one in the subclass. */
@Controller('kinds')
export class BareKindsController {
  constructor(protected readonly executions: Executions) {}

  @Post('object')
  object() {
    return { b: 1, a: 'x', nested: { z: [1, 'é', null], y: true } };
  }

  @Post('array')
  array() {
    return [3, { b: 2, a: 1 }, 'x'];
  }

  @Post('string')
  string() {
    return 'hello <world> & é';
  }

  @Post('empty-string')
  emptyString() {
    return '';
  }

  @Post('number')
  number() {
    return 42.5;
  }

  @Post('boolean')
  boolean() {
    return false;
  }

  @Post('null')
  null() {
    return null;
  }

  @Post('undefined')
  undefined(): void {
    return undefined;
  }

  @Post('buffer')
  buffer() {
    return Buffer.from([0, 1, 2, 250, 255]);
  }

  @Post('promise')
  async promise() {
    await sleep(5);
    return { from: 'promise' };
  }

  @Post('observable')
  observable() {
    return of({ first: true }, { last: true });
  }

  @Post('promised-observable')
  async promisedObservable() {
    return of('a', 'b');
  }

  @Post('json-content-type')
  @Header('Content-Type', 'application/vnd.api+json')
  jsonContentType() {
    return { data: { id: '1' } };
  }

  @Post('text-content-type')
  @Header('Content-Type', 'text/plain')
  textContentType() {
    return 'plain';
  }
}

@Controller('ikinds')
@Idempotent()
export class IdempotentKindsController extends BareKindsController {
  @Post('empty')
  empty(@Headers('idempotency-key') key: string) {
    this.executions.hit(key);
    return EMPTY;
  }

  @Post('streamable')
  streamable(@Headers('idempotency-key') key: string) {
    this.executions.hit(key);
    return new StreamableFile(Buffer.from('file contents'));
  }

  @Post('readable')
  readable(@Headers('idempotency-key') key: string) {
    this.executions.hit(key);
    return Readable.from(['a', 'b']);
  }

  /** `@Idempotent()` on the class and on the method: the method's options win, one claim only. */
  @Post('strict')
  @Idempotent({ required: true })
  strict(@Headers('idempotency-key') key: string) {
    return { n: this.executions.hit(key ?? 'strict-without-key') };
  }

  @Post('circular')
  circular(@Headers('idempotency-key') key: string) {
    this.executions.hit(key);
    const value: Record<string, unknown> = {};
    value.self = value;
    return value;
  }
}

export class UserEntity {
  id!: number;
  name!: string;
  @Exclude()
  password!: string;
  @Expose({ groups: ['admin'] })
  role?: string;

  constructor(partial: Partial<UserEntity>) {
    Object.assign(this, partial);
  }
}

@Controller('users')
export class UsersController {
  constructor(private readonly executions: Executions) {}

  @Post()
  @Idempotent()
  create(@Headers('idempotency-key') key: string) {
    return new UserEntity({ id: this.executions.hit(key), name: 'ada', password: 's3cret', role: 'admin' });
  }

  @Post('bare')
  bare() {
    return new UserEntity({ id: 1, name: 'ada', password: 's3cret', role: 'admin' });
  }

  @Post('admin')
  @Idempotent()
  @SerializeOptions({ groups: ['admin'] })
  admin(@Headers('idempotency-key') key: string) {
    return [new UserEntity({ id: this.executions.hit(key), name: 'ada', password: 's3cret', role: 'admin' })];
  }
}

/** The same entity, serialised by a controller-level ClassSerializerInterceptor. */
@Controller('serialized')
@UseInterceptors(ClassSerializerInterceptor)
export class ControllerSerializedController {
  constructor(private readonly executions: Executions) {}

  @Post()
  @Idempotent()
  create(@Headers('idempotency-key') key: string) {
    return new UserEntity({ id: this.executions.hit(key), name: 'ada', password: 's3cret' });
  }
}

export const ALL_CONTROLLERS: Type[] = [
  ItemsController,
  BareKindsController,
  IdempotentKindsController,
  UsersController,
  ControllerSerializedController,
];

/** Collects what the application logs at warn level and above. */
export class CapturingLogger implements LoggerService {
  readonly errors: string[] = [];
  readonly warnings: string[] = [];
  log(): void {}
  debug(): void {}
  verbose(): void {}
  error(message: unknown, ...rest: unknown[]): void {
    this.errors.push([message, ...rest].map(String).join(' '));
  }
  fatal(message: unknown, ...rest: unknown[]): void {
    this.error(message, ...rest);
  }
  warn(message: unknown, ...rest: unknown[]): void {
    this.warnings.push([message, ...rest].map(String).join(' '));
  }
  clear(): void {
    this.errors.length = 0;
    this.warnings.length = 0;
  }
}

/**
 * A store that delegates to another and fails on demand: a fault injector for the store
 * operations, not a stand-in for the store under test.
 */
export class FaultyStore extends IdempotencyStore {
  readonly kind: string;
  failTryInsert = false;
  /** How many `complete` calls fail before they go through again. */
  failCompletes = 0;
  failTouch = false;
  completes = 0;
  /** `waitForChange` calls (waiters) not answered yet. */
  waiting = 0;
  /** Each answered `waitForChange`: whether it ended before its timeout (woken, or its signal aborted). */
  readonly waits: { timeoutMs: number; early: boolean }[] = [];

  constructor(readonly inner: IdempotencyStore) {
    super();
    this.kind = `faulty-${inner.kind}`;
  }

  async tryInsert(key: IdempotencyKey, entry: ProcessingEntry): Promise<InsertResult> {
    if (this.failTryInsert) throw new Error('injected: store unreachable');
    return this.inner.tryInsert(key, entry);
  }

  async complete(
    key: IdempotencyKey,
    entry: CompletedEntry,
    token: FencingToken,
    ttlMs: number,
  ): Promise<FencedOutcome> {
    this.completes++;
    if (this.failCompletes > 0) {
      this.failCompletes--;
      throw new Error('injected: complete failed');
    }
    return this.inner.complete(key, entry, token, ttlMs);
  }

  remove(key: IdempotencyKey, token: FencingToken): Promise<FencedOutcome> {
    return this.inner.remove(key, token);
  }

  async touch(key: IdempotencyKey, token: FencingToken, ttlMs: number): Promise<FencedOutcome> {
    if (this.failTouch) throw new Error('injected: touch failed');
    return this.inner.touch(key, token, ttlMs);
  }

  purge(key: IdempotencyKey): Promise<void> {
    return this.inner.purge(key);
  }

  get(key: IdempotencyKey): Promise<AnyEntry | undefined> {
    return this.inner.get(key);
  }

  override async waitForChange(key: IdempotencyKey, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    // A timer never fires early, so a wait that ends sooner than timeoutMs was woken.
    const started = performance.now();
    this.waiting++;
    try {
      await this.inner.waitForChange(key, timeoutMs, signal);
    } finally {
      this.waiting--;
      this.waits.push({ timeoutMs, early: performance.now() - started < timeoutMs - 1 });
    }
  }
}

/** A Writable collecting Fastify's own log lines. */
export class LogLines extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _encoding: string, callback: () => void): void {
    this.lines.push(chunk.toString());
    callback();
  }
}

export interface TestAppOptions {
  store: IdempotencyStore;
  moduleOptions?: Omit<IdempotencyModuleOptions, 'store'>;
  controllers?: Type[];
  globalSerializer?: boolean;
  rawBody?: boolean;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  providers?: any[];
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  globalInterceptors?: any[];
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  globalFilters?: any[];
  module?: DynamicModule;
  /** `app.enableCors()`: middleware that sets headers before any handler runs. */
  cors?: boolean;
  /**
   * A provider whose `beforeApplicationShutdown` waits until the gate opens (a drain delay, as before
   * a load balancer lets go); `drain.started` resolves when it begins (the module destroy hooks have
   * run, the server still listens).
   */
  drain?: DrainGate;
}

/** Waits in `beforeApplicationShutdown`, as apps do to let a load balancer stop sending traffic. */
export class DrainGate implements BeforeApplicationShutdown {
  #start!: () => void;
  #open!: () => void;
  readonly started = new Promise<void>((resolve) => (this.#start = resolve));
  readonly #opened = new Promise<void>((resolve) => (this.#open = resolve));

  async beforeApplicationShutdown(): Promise<void> {
    this.#start();
    await this.#opened;
  }

  open(): void {
    this.#open();
  }
}

export interface TestApp {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  app: any;
  client: HttpClient;
  executions: Executions;
  logger: CapturingLogger;
  /** Fastify's own log output (warnings and errors), empty on Express. */
  platformLog: LogLines;
  close(): Promise<void>;
}

@Module({})
class TestAppModule {}

export async function startApp(platform: Platform, options: TestAppOptions): Promise<TestApp> {
  const logger = new CapturingLogger();
  const platformLog = new LogLines();
  const module: DynamicModule = {
    module: TestAppModule,
    imports: [options.module ?? IdempotencyModule.forRoot({ store: options.store, ...options.moduleOptions })],
    controllers: options.controllers ?? ALL_CONTROLLERS,
    providers: [
      Executions,
      ...(options.providers ?? []),
      ...(options.drain === undefined ? [] : [{ provide: DrainGate, useValue: options.drain }]),
    ],
  };
  const adapter =
    platform === 'express'
      ? new ExpressAdapter()
      : new FastifyAdapter({ logger: { level: 'warn', stream: platformLog } as never });
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const app: any = await NestFactory.create(module, adapter as never, { logger, rawBody: options.rawBody });
  app.useGlobalGuards(new UserFromHeaderGuard());
  if (options.cors) app.enableCors({ origin: '*', exposedHeaders: ['X-Handler'] });
  if (options.globalSerializer) app.useGlobalInterceptors(new ClassSerializerInterceptor(app.get(Reflector)));
  if (options.globalInterceptors) app.useGlobalInterceptors(...options.globalInterceptors);
  if (options.globalFilters) app.useGlobalFilters(...options.globalFilters);
  await app.listen(0, '127.0.0.1');
  const url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  const client = new HttpClient(url);
  return {
    app,
    client,
    executions: app.get(Executions),
    logger,
    platformLog,
    async close() {
      client.close();
      await app.close();
    },
  };
}

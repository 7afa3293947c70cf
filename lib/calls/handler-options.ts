import type { ExecutionContext } from '@nestjs/common';
import { DefaultFingerprintStrategy, type FingerprintStrategy } from '../core/fingerprint-strategy';
import { IDEMPOTENT_METADATA } from '../idempotency.constants';
import { mergeOptions, type ResolvedIdempotencyOptions } from '../idempotency.options';
import type { IdempotencyOptions } from '../interfaces/idempotency-options.interface';
import { hasClaimParameter, hasTransactionParameter } from './idempotency-claim.decorator';

/** What every message handler or resolver under `@Idempotent()` shares, worked out once. @internal */
export interface HandlerBase {
  /** Module, class and method options, merged. */
  readonly options: ResolvedIdempotencyOptions;
  /** Whether the method itself has `@Idempotent()` (not only its class). */
  readonly onMethod: boolean;
  /** Whether a parameter asks for `@IdempotencyClaim()` (or `@IdempotencyTransaction()`). */
  readonly wantsClaim: boolean;
  /** Whether a parameter asks for `@IdempotencyTransaction()`: the work runs in a transaction with its result. */
  readonly wantsTransaction: boolean;
  /** `Class.method()`, for logs and errors. */
  readonly name: string;
  /** The strategy values are fingerprinted with. */
  readonly strategy: FingerprintStrategy;
}

const DEFAULT_STRATEGY = new DefaultFingerprintStrategy();

/**
 * The configuration of each `@Idempotent()` handler of one kind (message handlers, resolvers),
 * made by `make` on the first call and cached per class and method; `null` for handlers without
 * `@Idempotent()`.
 * @internal
 */
export class HandlerConfigs<T> {
  readonly #byClass = new WeakMap<object, Map<object, T | null>>();

  constructor(
    private readonly moduleOptions: ResolvedIdempotencyOptions,
    private readonly make: (base: HandlerBase, handler: object, context: ExecutionContext) => T | null,
  ) {}

  of(context: ExecutionContext): T | null {
    const controller = context.getClass();
    const handler = context.getHandler();
    let byHandler = this.#byClass.get(controller);
    if (byHandler === undefined) {
      byHandler = new Map();
      this.#byClass.set(controller, byHandler);
    }
    let config = byHandler.get(handler);
    if (config === undefined) {
      config = this.#resolve(context, controller, handler);
      byHandler.set(handler, config);
    }
    return config;
  }

  #resolve(context: ExecutionContext, controller: { name: string }, handler: { name: string }): T | null {
    const classOptions = Reflect.getMetadata(IDEMPOTENT_METADATA, controller) as IdempotencyOptions | undefined;
    const methodOptions = Reflect.getMetadata(IDEMPOTENT_METADATA, handler) as IdempotencyOptions | undefined;
    if (classOptions === undefined && methodOptions === undefined) return null;
    const options = mergeOptions(mergeOptions(this.moduleOptions, classOptions), methodOptions);
    // A fingerprint function is a function of the HTTP request: messages and resolvers use the
    // strategy (the default one when the option is a function).
    const strategy = typeof options.fingerprint === 'function' ? DEFAULT_STRATEGY : options.fingerprint;
    const base: HandlerBase = {
      options,
      onMethod: methodOptions !== undefined,
      wantsClaim: hasClaimParameter(controller, handler.name),
      wantsTransaction: hasTransactionParameter(controller, handler.name),
      name: `${controller.name}.${handler.name}()`,
      strategy,
    };
    return this.make(base, handler, context);
  }
}

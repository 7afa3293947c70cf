import { ClassSerializerInterceptor, ExecutionContext, RequestMethod } from '@nestjs/common';
import {
  HEADERS_METADATA,
  HTTP_CODE_METADATA,
  INTERCEPTORS_METADATA,
  METHOD_METADATA,
  PATH_METADATA,
  RESPONSE_PASSTHROUGH_METADATA,
} from '@nestjs/common/constants';
import type { ClassSerializerContextOptions } from '@nestjs/common/serializer/class-serializer.interfaces';
import { ApplicationConfig, Reflector } from '@nestjs/core';
import type { ResolvedIdempotencyOptions } from '../idempotency.options';
import { type HandlerBase, HandlerConfigs } from '../calls/handler-options';
import { UnusableScopeLog, type UnusableScopeError } from '../calls/principal';
import type { CachedResponse } from '../core/cached-response';
import { type PreparedProblem, prepareProblem, type ProblemDetails, Problems } from '../calls/problem-details';
import { problemResponse, ReplayHeaders, statusOfError } from './response-capture';
import type { ResponseSnapshot } from './reply-guard';
import { isSafeRoute, unsupportedReason } from './route-check';

/** A ClassSerializerInterceptor outside the route's handler, and the options it would use there. */
export interface OuterSerializer {
  readonly interceptor: ClassSerializerInterceptor;
  readonly options: ClassSerializerContextOptions;
}

/** Everything about a route that does not change between requests, worked out once. @internal */
export interface Route {
  readonly options: ResolvedIdempotencyOptions;
  readonly replayHeaders: ReplayHeaders;
  /** Global or controller-level ClassSerializerInterceptors outside the handler, innermost first. */
  readonly serializers: readonly OuterSerializer[];
  readonly unsupported: string | undefined;
  readonly cacheError: (error: unknown) => boolean;
  readonly inFlight: PreparedProblem;
  readonly storeUnavailable: PreparedProblem;
  readonly completionFailed: PreparedProblem;
  readonly keyMissing: PreparedProblem;
  readonly keyReused: PreparedProblem;
  /** The principal cannot be named (500): the request is refused, never run unscoped. */
  readonly scopeInvalid: PreparedProblem;
  /** The stored response cannot be opened (500, `encryption`): refused, never run again. */
  readonly recordUnreadable: PreparedProblem;
  /** Stored in place of a response over `maxResponseBytes`: retries get 413, the handler does not run again. */
  readonly tooLarge: CachedResponse;
  /** A problem for this route (with its `problemBody`), for problems that vary per request. */
  prepare(problem: ProblemDetails, retryAfter?: number): PreparedProblem;
  /** Whether the handler can reach the response object (`@Res({ passthrough: true })`). */
  readonly handlesResponse: boolean;
  /** Whether a parameter asks for `@IdempotencyClaim()` (or `@IdempotencyTransaction()`). */
  readonly wantsClaim: boolean;
  /** Whether a parameter asks for `@IdempotencyTransaction()`. */
  readonly wantsTransaction: boolean;
  /** The status code and headers Nest sets before the handler runs (`@HttpCode()`, `@Header()`). */
  declared(): ResponseSnapshot;
  /** `Controller.method()`, for logs. */
  readonly name: string;
  /** `METHOD /path/:pattern`, for telemetry and events. */
  readonly label: string;
}

/** A Nest-bound interceptor: an instance, or a class Nest instantiates. */
type BoundInterceptor = unknown;

/**
 * Works out (once per controller method, then cached) how a request to an `@Idempotent()` route
 * is handled: merged options, prepared problems, outer serializers, labels.
 * @internal
 */
export class RouteConfigs {
  readonly #routes: HandlerConfigs<Route>;

  constructor(
    moduleOptions: ResolvedIdempotencyOptions,
    private readonly applicationConfig: ApplicationConfig | undefined,
    private readonly reflector: Reflector,
    /** Whether an interceptor in the chain is the idempotency interceptor (serializers inside it do not apply). */
    private readonly isIdempotencyInterceptor: (interceptor: BoundInterceptor) => boolean,
  ) {
    this.#routes = new HandlerConfigs(moduleOptions, (base, handler, context) =>
      // A class-level @Idempotent() leaves safe methods (GET, HEAD, OPTIONS) alone.
      !base.onMethod && isSafeRoute(handler)
        ? null
        : this.#resolve(base, context, context.getClass(), handler as { name: string }),
    );
  }

  readonly #unusableScopes = new UnusableScopeLog();

  /** Logs, once per route, why its requests are refused for want of a usable principal. */
  logUnusableScopeOnce(context: ExecutionContext, error: UnusableScopeError, logger: { error(message: string): void }) {
    const handler = context.getHandler();
    this.#unusableScopes.once(handler, `${context.getClass().name}.${handler.name}()`, error, logger);
  }

  /** The route of `context`, or `null` when it is not `@Idempotent()`. */
  of(context: ExecutionContext): Route | null {
    return this.#routes.of(context);
  }

  #resolve(
    base: HandlerBase,
    context: ExecutionContext,
    controller: { name: string },
    handler: { name: string },
  ): Route {
    const options = base.options;
    const methodName = handler.name;
    const method = RequestMethod[Reflect.getMetadata(METHOD_METADATA, handler) as number] ?? 'ALL';
    const paths = [Reflect.getMetadata(PATH_METADATA, controller), Reflect.getMetadata(PATH_METADATA, handler)];
    const path = paths
      .map((p) => (Array.isArray(p) ? p[0] : p))
      .filter((p): p is string => typeof p === 'string' && p !== '/' && p !== '')
      .map((p) => p.replace(/^\/+|\/+$/g, ''))
      .join('/');
    const status =
      (Reflect.getMetadata(HTTP_CODE_METADATA, handler) as number | undefined) ?? (method === 'POST' ? 201 : 200);
    const headers = (Reflect.getMetadata(HEADERS_METADATA, handler) ?? []) as {
      name: string;
      value: string | (() => string);
    }[];
    const retryAfter = options.retryAfterSeconds;
    const render = options.problemBody;
    const prepare = (problem: ProblemDetails, seconds?: number) => prepareProblem(problem, seconds, render);
    return {
      options,
      replayHeaders: new ReplayHeaders(options.replayHeaders),
      serializers: this.#outerSerializers(context, controller, handler),
      unsupported: unsupportedReason(controller, handler, methodName),
      cacheError: cacheErrorPredicate(options),
      inFlight: prepare(Problems.inFlight(), retryAfter),
      storeUnavailable: prepare(Problems.storeUnavailable(), retryAfter),
      completionFailed: prepare(Problems.completionFailed(), retryAfter),
      keyMissing: prepare(Problems.keyMissing(options.headerName)),
      keyReused: prepare(Problems.keyReused()),
      scopeInvalid: prepare(Problems.scopeInvalid()),
      recordUnreadable: prepare(Problems.recordUnreadable()),
      tooLarge: problemResponse(prepare(Problems.responseTooLarge())),
      prepare,
      handlesResponse: Reflect.getMetadata(RESPONSE_PASSTHROUGH_METADATA, controller, methodName) === true,
      wantsClaim: base.wantsClaim,
      wantsTransaction: base.wantsTransaction,
      declared: () => ({
        statusCode: status,
        headers: Object.fromEntries(
          headers.map(({ name, value }) => [name.toLowerCase(), typeof value === 'function' ? value() : value]),
        ),
      }),
      name: base.name,
      label: `${method} /${path}`,
    };
  }

  /** ClassSerializerInterceptors bound outside the route's handler, innermost first, with their options there. */
  #outerSerializers(context: ExecutionContext, controller: object, handler: object): OuterSerializer[] {
    // The interceptors bound to the route, outermost first, as Nest runs them.
    const chain: BoundInterceptor[] = [
      ...(this.applicationConfig?.getGlobalInterceptors() ?? []),
      ...((Reflect.getMetadata(INTERCEPTORS_METADATA, controller) as unknown[] | undefined) ?? []),
      ...((Reflect.getMetadata(INTERCEPTORS_METADATA, handler) as unknown[] | undefined) ?? []),
    ];
    // The wrapped handler runs inside every interceptor; an idempotency interceptor inside those
    // listed before it.
    const first = chain.findIndex(this.isIdempotencyInterceptor);
    const serializers: OuterSerializer[] = [];
    for (const outer of chain.slice(0, first === -1 ? chain.length : first).reverse()) {
      const interceptor = this.#serializerOf(outer);
      if (interceptor === undefined) continue;
      const defaults = (interceptor as unknown as { defaultOptions?: ClassSerializerContextOptions }).defaultOptions;
      const contextOptions = (
        interceptor as unknown as { getContextOptions(c: ExecutionContext): ClassSerializerContextOptions | undefined }
      ).getContextOptions(context);
      serializers.push({ interceptor, options: { ...defaults, ...contextOptions } });
    }
    return serializers;
  }

  #serializerOf(interceptor: BoundInterceptor): ClassSerializerInterceptor | undefined {
    if (interceptor instanceof ClassSerializerInterceptor) return interceptor;
    if (
      typeof interceptor === 'function' &&
      (interceptor === ClassSerializerInterceptor || interceptor.prototype instanceof ClassSerializerInterceptor)
    ) {
      // Bound as a class: Nest builds it with the Reflector and no default options, as here.
      return new (interceptor as new (reflector: Reflector) => ClassSerializerInterceptor)(this.reflector);
    }
    return undefined;
  }
}

function cacheErrorPredicate(options: ResolvedIdempotencyOptions): (error: unknown) => boolean {
  const cacheErrors = options.cacheErrors;
  if (cacheErrors === true) return () => true;
  if (cacheErrors === false) return () => false;
  if (typeof cacheErrors === 'function') return (error) => cacheErrors(error) === true;
  const statuses = new Set(cacheErrors);
  return (error) => statuses.has(statusOfError(error));
}

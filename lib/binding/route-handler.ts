import { CallHandler, createParamDecorator, ExecutionContext, Type } from '@nestjs/common';
import { METHOD_METADATA, PATH_METADATA, ROUTE_ARGS_METADATA } from '@nestjs/common/constants';
import { defer, from, isObservable, mergeMap, Observable, of } from 'rxjs';
import { isMutationResolver } from '../graphql/graphql-resolver';
import { isSafeRoute } from '../http/route-check';
import { addDefaultRpcArguments, rpcHandlerKind } from '../rpc/rpc-handler';
import { callToken } from '../calls/call-token';
import { claimParameterIndexes, fillClaimArguments } from '../calls/idempotency-claim.decorator';

/** What the route's hidden parameter resolves to: the request's context and the module's engine. @internal */
export interface RouteBinding {
  readonly context: ExecutionContext;
  readonly engine: {
    runRoute(context: ExecutionContext, next: CallHandler, passThrough: () => unknown): unknown;
  };
}

const WRAPPED = Symbol.for('nestjs-idempotent:wrapped-handler');

// The hidden parameter hands the wrapper its ExecutionContext; the engine pipe (resolved by
// Nest's injector in the controller's module, like any pipe) adds the module's engine to it.
const RouteContext = createParamDecorator((_data: unknown, context: ExecutionContext) => context);

/**
 * Makes a route handler idempotent by wrapping it, rather than by binding an interceptor: Nest's
 * interceptor chain costs every request two `AsyncResource.bind` calls (each making deprecation
 * wrappers on Node 20), which measured more than the whole idempotency work of a replay. The
 * wrapper receives the ExecutionContext through a hidden trailing parameter whose pipe is
 * `enginePipe`, and runs the handler inside the engine; everything else (guards, pipes,
 * interceptors, exception filters) works as for any route.
 * @internal
 */
export function wrapRouteHandler(
  target: object,
  key: string | symbol,
  descriptor: PropertyDescriptor,
  enginePipe: Type<unknown>,
): PropertyDescriptor {
  const original = descriptor.value as ((...args: unknown[]) => unknown) & { [WRAPPED]?: true };
  if (typeof original !== 'function' || original[WRAPPED]) return descriptor;
  const host = (target as { constructor: object }).constructor;
  const params = (Reflect.getMetadata(ROUTE_ARGS_METADATA, host, key) ?? {}) as Record<string, { index: number }>;
  // Parameter decorators run before method decorators, so these are all the handler declares.
  const declaresNone = Object.keys(params).length === 0;
  // After every declared and decorated parameter, so the handler's own arguments are untouched;
  // never first, where a message handler's default payload goes.
  const index = Math.max(original.length, declaresNone ? 1 : 0, ...Object.values(params).map((p) => p.index + 1));
  RouteContext(undefined, enginePipe)(target, key, index);
  if (declaresNone) {
    // Nest hands a handler that declares no parameters its default arguments, and the hidden one
    // takes that away: a message handler gets its payload back as metadata (so pipes still run),
    // a resolver its raw arguments from the wrapper below. Whether this is a message handler is
    // known only once its other decorators ran: now if they are above, else when the class is done.
    addDefaultRpcArguments(host, key, original);
    queueMicrotask(() => addDefaultRpcArguments(host, key, (target as Record<string | symbol, unknown>)[key]));
  }

  // `@IdempotencyClaim()` parameters: Nest resolves them before this wrapper claims the key, so
  // they hold a stand-in that is replaced by the claim right before the handler runs.
  const claimIndexes = claimParameterIndexes(host, key);
  const wrapped = function (this: unknown, ...args: unknown[]): unknown {
    const binding = args[index] as RouteBinding | undefined;
    args.length = index;
    if (binding === undefined || binding.engine === undefined) return original.apply(this, args);
    const context = binding.context;
    // A resolver that declares no parameters gets (root, args, context, info), as without the wrapper.
    if (declaresNone && context.getType<string>() === 'graphql') args = context.getArgs().slice();
    const run =
      claimIndexes.length === 0
        ? () => original.apply(this, args)
        : () => {
            fillClaimArguments(args, claimIndexes, callToken(context));
            return original.apply(this, args);
          };
    return binding.engine.runRoute(context, callHandlerOf(run), run);
  };
  // Route metadata written so far (path, method, status code, headers, enhancers, ...) moves to
  // the wrapper, which is what Nest reads from now on; later decorators write to it directly.
  for (const metadataKey of Reflect.getMetadataKeys(original)) {
    Reflect.defineMetadata(metadataKey, Reflect.getMetadata(metadataKey, original), wrapped);
  }
  Object.defineProperty(wrapped, 'name', { value: original.name });
  Object.defineProperty(wrapped, 'length', { value: original.length });
  Object.defineProperty(wrapped, WRAPPED, { value: true });
  descriptor.value = wrapped;
  return descriptor;
}

/**
 * Wraps every handler of a controller or resolver class (own or inherited) that is not wrapped
 * yet: HTTP routes, message and event handlers, and mutations (never queries or field resolvers).
 * @internal
 */
export function wrapRouteHandlers(controller: { prototype: object }, enginePipe: Type<unknown>): void {
  const seen = new Set<string | symbol>();
  for (
    let proto = controller.prototype;
    proto !== null && proto !== Object.prototype;
    proto = Object.getPrototypeOf(proto)
  ) {
    for (const key of Reflect.ownKeys(proto)) {
      if (key === 'constructor' || seen.has(key)) continue;
      seen.add(key);
      const descriptor = Object.getOwnPropertyDescriptor(proto, key);
      const handler = descriptor?.value;
      if (typeof handler !== 'function' || handler[WRAPPED]) continue;
      if (!isGuardable(handler)) continue;
      // Inherited handlers get a wrapped copy on this class; the parent class stays as it was.
      const own = { ...descriptor!, value: handler };
      Object.defineProperty(controller.prototype, key, wrapRouteHandler(controller.prototype, key, own, enginePipe));
    }
  }
}

/** Whether a class-level `@Idempotent()` guards `handler`: routes but safe ones, message handlers, mutations. */
function isGuardable(handler: object): boolean {
  return (
    (Reflect.getMetadata(PATH_METADATA, handler) !== undefined &&
      Reflect.getMetadata(METHOD_METADATA, handler) !== undefined &&
      !isSafeRoute(handler)) ||
    rpcHandlerKind(handler) !== undefined ||
    isMutationResolver(handler)
  );
}

/**
 * A `CallHandler` (what an interceptor's `next` is) for a handler that `run` calls: its result as
 * Nest reads it. @internal
 */
export function callHandlerOf(run: () => unknown): CallHandler {
  return { handle: () => toObservable(run) };
}

/** The handler's result as Nest reads it: a value, a Promise, an Observable, or a Promise of one. */
function toObservable(run: () => unknown): Observable<unknown> {
  return defer(() => {
    const result = run();
    if (isObservable(result)) return result;
    if (typeof (result as PromiseLike<unknown> | null)?.then !== 'function') return of(result);
    return from(result as PromiseLike<unknown>).pipe(mergeMap((value) => (isObservable(value) ? value : of(value))));
  });
}

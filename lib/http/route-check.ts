import { RequestMethod } from '@nestjs/common';
import {
  METHOD_METADATA,
  PATH_METADATA,
  REDIRECT_METADATA,
  RENDER_METADATA,
  RESPONSE_PASSTHROUGH_METADATA,
  ROUTE_ARGS_METADATA,
  SSE_METADATA,
} from '@nestjs/common/constants';
import { RouteParamtypes } from '@nestjs/common/enums/route-paramtypes.enum';
import { IDEMPOTENT_METADATA } from '../idempotency.constants';

/**
 * Why `@Idempotent()` cannot guard a route, or `undefined` when it can. Such routes answer
 * with something this library cannot capture and store before it is sent.
 * @internal
 */
export function unsupportedReason(controller: object, handler: unknown, methodName: string): string | undefined {
  if (typeof handler !== 'function') return undefined;
  const where = `${(controller as { name?: string }).name ?? 'controller'}.${methodName}()`;
  if (Reflect.getMetadata(SSE_METADATA, handler)) {
    return `@Idempotent() cannot guard the @Sse() route ${where}: an event stream cannot be stored and replayed.`;
  }
  if (Reflect.getMetadata(RENDER_METADATA, handler) !== undefined) {
    return `@Idempotent() cannot guard the @Render() route ${where}: return the data and render it in a client, or drop @Idempotent().`;
  }
  if (Reflect.getMetadata(REDIRECT_METADATA, handler) !== undefined) {
    return `@Idempotent() cannot guard the @Redirect() route ${where}: set the status and Location with @HttpCode() and @Header() (or @Res({ passthrough: true })) instead.`;
  }
  const args = Reflect.getMetadata(ROUTE_ARGS_METADATA, controller, methodName) as Record<string, unknown> | undefined;
  if (args !== undefined) {
    const writesItself = Object.keys(args).some((key) => {
      const type = Number(key.split(':')[0]);
      return type === RouteParamtypes.RESPONSE || type === RouteParamtypes.NEXT;
    });
    if (writesItself && !Reflect.getMetadata(RESPONSE_PASSTHROUGH_METADATA, controller, methodName)) {
      return `@Idempotent() cannot guard ${where}: it writes the response itself through @Res()/@Next(); use @Res({ passthrough: true }) and return the body.`;
    }
  }
  return undefined;
}

const SAFE_METHODS: ReadonlySet<unknown> = new Set([RequestMethod.GET, RequestMethod.HEAD, RequestMethod.OPTIONS]);

/**
 * Whether `handler` is a route of a safe method (GET, HEAD, OPTIONS): repeating it changes
 * nothing, so a class-level `@Idempotent()` leaves it alone (only one on the method itself applies).
 * @internal
 */
export function isSafeRoute(handler: unknown): handler is object {
  return typeof handler === 'function' && SAFE_METHODS.has(Reflect.getMetadata(METHOD_METADATA, handler));
}

/** Whether `handler` (of `controller`) is a route `@Idempotent()` guards: its own, or its class's but for safe methods. */
function guardedRoute(controller: object, handler: unknown): handler is object {
  if (typeof handler !== 'function' || Reflect.getMetadata(PATH_METADATA, handler) === undefined) return false;
  if (Reflect.getMetadata(IDEMPOTENT_METADATA, handler) !== undefined) return true;
  return Reflect.getMetadata(IDEMPOTENT_METADATA, controller) !== undefined && !isSafeRoute(handler);
}

/**
 * Every `@Idempotent()` route among `controllers` that cannot be guarded, as messages.
 * @internal
 */
export function findUnsupportedRoutes(controllers: Iterable<{ name: string; prototype: object }>): string[] {
  const problems: string[] = [];
  for (const controller of controllers) {
    for (const name of methodNames(controller.prototype)) {
      const handler = (controller.prototype as Record<string, unknown>)[name];
      if (!guardedRoute(controller, handler)) continue;
      const reason = unsupportedReason(controller, handler, name);
      if (reason !== undefined) problems.push(reason);
    }
  }
  return problems;
}

/**
 * A warning for every route of a safe method (GET, HEAD, OPTIONS) with `@Idempotent()` on the
 * method itself: it applies, as asked, but such requests are meant to be safe to repeat.
 * @internal
 */
export function findSafeMethodRoutes(controllers: Iterable<{ name: string; prototype: object }>): string[] {
  const warnings: string[] = [];
  for (const controller of controllers) {
    for (const name of methodNames(controller.prototype)) {
      const handler = (controller.prototype as Record<string, unknown>)[name];
      if (!isSafeRoute(handler) || Reflect.getMetadata(IDEMPOTENT_METADATA, handler) === undefined) continue;
      const method = RequestMethod[Reflect.getMetadata(METHOD_METADATA, handler) as number];
      warnings.push(
        `@Idempotent() on ${controller.name}.${name}(), a ${method} route: it applies, as asked (a ${method} request ` +
          `with a key runs once, and its retries get the stored response), but ${method} requests are meant to be safe to repeat. ` +
          'Keep it only if the route has side effects.',
      );
    }
  }
  return warnings;
}

function methodNames(prototype: object | null): Set<string> {
  const names = new Set<string>();
  for (let p = prototype; p !== null && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
    for (const name of Object.getOwnPropertyNames(p)) {
      if (name === 'constructor') continue;
      const descriptor = Object.getOwnPropertyDescriptor(p, name);
      if (descriptor !== undefined && typeof descriptor.value === 'function') names.add(name);
    }
  }
  return names;
}

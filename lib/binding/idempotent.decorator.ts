import { SSE_METADATA } from '@nestjs/common/constants';
import { IDEMPOTENT_METADATA } from '../idempotency.constants';
import { documentIdempotentRoute } from '../swagger/idempotency-swagger';
import { validateOptions } from '../idempotency.options';
import type { IdempotencyOptions } from '../interfaces/idempotency-options.interface';
import { IdempotencyRoutePipe } from './route-pipe';
import { wrapRouteHandler, wrapRouteHandlers } from './route-handler';

/**
 * Makes a route (or every route of a controller) run at most once per `Idempotency-Key`, and
 * replay its stored response to retries. Binds the idempotency interceptor to the route itself: nothing else is needed
 * besides `IdempotencyModule.forRoot(...)`. Options override the module-wide ones; on a method
 * they also override those of an `@Idempotent()` on its controller.
 *
 * ```ts
 * @Post('charges')
 * @Idempotent({ required: true })
 * charge(@Body() dto: ChargeDto) { ... }
 * ```
 */
export function Idempotent(options: IdempotencyOptions = {}): ClassDecorator & MethodDecorator {
  validateOptions(options, '@Idempotent()');
  const stored = Object.freeze({ ...options });
  return ((target: object, key?: string | symbol, descriptor?: PropertyDescriptor) => {
    if (descriptor !== undefined) {
      if (Reflect.getMetadata(SSE_METADATA, descriptor.value)) {
        throw new TypeError(
          `@Idempotent() cannot guard the @Sse() route ${String(key)}(): an event stream cannot be stored and replayed.`,
        );
      }
      Reflect.defineMetadata(IDEMPOTENT_METADATA, stored, descriptor.value);
      wrapRouteHandler(target, key as string | symbol, descriptor, IdempotencyRoutePipe);
      documentIdempotentRoute(target, key, descriptor);
      return descriptor;
    }
    Reflect.defineMetadata(IDEMPOTENT_METADATA, stored, target);
    wrapRouteHandlers(target as { prototype: object }, IdempotencyRoutePipe);
    documentIdempotentRoute(target);
    return target;
  }) as ClassDecorator & MethodDecorator;
}

import { SSE_METADATA } from '@nestjs/common/constants';
import { IDEMPOTENCY_KEY_HEADER, IDEMPOTENT_METADATA } from '../idempotency.constants';
import { idempotencyApiDocs } from '../swagger/idempotency-swagger';
import { validateOptions } from '../idempotency.providers';
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
  // OpenAPI docs when @nestjs/swagger is installed. Decorators run before the module is
  // configured, so module-wide headerName/required are not known here: the route's own (or the
  // defaults) are documented.
  const docs = idempotencyApiDocs(options.headerName ?? IDEMPOTENCY_KEY_HEADER, options.required ?? false);
  return ((target: object, key?: string | symbol, descriptor?: PropertyDescriptor) => {
    if (descriptor !== undefined) {
      if (Reflect.getMetadata(SSE_METADATA, descriptor.value)) {
        throw new TypeError(
          `@Idempotent() cannot guard the @Sse() route ${String(key)}(): an event stream cannot be stored and replayed.`,
        );
      }
      Reflect.defineMetadata(IDEMPOTENT_METADATA, stored, descriptor.value);
      wrapRouteHandler(target, key as string | symbol, descriptor, IdempotencyRoutePipe);
      for (const doc of docs) doc(target, key as string | symbol, descriptor);
      return descriptor;
    }
    Reflect.defineMetadata(IDEMPOTENT_METADATA, stored, target);
    wrapRouteHandlers(target as { prototype: object }, IdempotencyRoutePipe);
    for (const doc of docs) (doc as (target: object) => void)(target);
    return target;
  }) as ClassDecorator & MethodDecorator;
}

import { ExecutionContext, Inject, Injectable, Optional, PipeTransform } from '@nestjs/common';
import { ApplicationConfig, HttpAdapterHost, Reflector } from '@nestjs/core';
import { IdempotencyStore } from '../core/idempotency-store';
import { IDEMPOTENCY_OPTIONS } from '../idempotency.constants';
import type { ResolvedIdempotencyOptions } from '../idempotency.options';
import { IdempotencyInterceptor } from './idempotency.interceptor';
import type { RouteBinding } from './route-handler';

/**
 * The pipe of the hidden parameter `@Idempotent()` adds to its routes: hands the wrapped handler
 * its context and the engine. Nest's injector builds it in the controller's module, like any pipe,
 * so dependency injection and several applications per process work.
 * @internal
 */
@Injectable()
export class IdempotencyRoutePipe implements PipeTransform<ExecutionContext, RouteBinding> {
  readonly #engine: IdempotencyInterceptor;

  constructor(
    // Optional, so that a missing IdempotencyModule is said plainly, not as a dependency of this pipe.
    @Optional() @Inject(IdempotencyStore) store: IdempotencyStore | undefined,
    @Optional() @Inject(IDEMPOTENCY_OPTIONS) options: ResolvedIdempotencyOptions | undefined,
    reflector: Reflector,
    adapterHost: HttpAdapterHost,
    applicationConfig: ApplicationConfig,
  ) {
    if (store === undefined || store === null || options === undefined) {
      throw new Error(
        '@Idempotent() needs IdempotencyModule: add IdempotencyModule.forRoot(store) (or forRootAsync(...)) to the ' +
          'imports of your root module. It is global, so once is enough (with isGlobal: false, import it in every ' +
          'module whose controllers, resolvers or message handlers use @Idempotent()).',
      );
    }
    this.#engine = new IdempotencyInterceptor(store, options, reflector, adapterHost, applicationConfig);
  }

  transform(context: ExecutionContext): RouteBinding {
    return { context, engine: this.#engine };
  }
}

import { ExecutionContext, Inject, Injectable, PipeTransform } from '@nestjs/common';
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
    store: IdempotencyStore,
    @Inject(IDEMPOTENCY_OPTIONS) options: ResolvedIdempotencyOptions,
    reflector: Reflector,
    adapterHost: HttpAdapterHost,
    applicationConfig: ApplicationConfig,
  ) {
    this.#engine = new IdempotencyInterceptor(store, options, reflector, adapterHost, applicationConfig);
  }

  transform(context: ExecutionContext): RouteBinding {
    return { context, engine: this.#engine };
  }
}

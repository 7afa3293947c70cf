import { applyDecorators } from '@nestjs/common';
import { IDEMPOTENCY_KEY_HEADER, IDEMPOTENT_METADATA } from '../idempotency.constants';
import { MAX_KEY_BYTES } from '../core/idempotency-key';

type SwaggerModule = typeof import('@nestjs/swagger');
let swagger: SwaggerModule | null | undefined;

/** `@nestjs/swagger` when the app has it installed, else `null` (it is an optional peer). */
function loadSwagger(): SwaggerModule | null {
  if (swagger === undefined) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      swagger = require('@nestjs/swagger') as SwaggerModule;
    } catch {
      swagger = null;
    }
  }
  return swagger;
}

const problem = (description: string) => ({
  description,
  content: {
    'application/problem+json': {
      schema: {
        type: 'object',
        properties: {
          type: { type: 'string' },
          title: { type: 'string' },
          status: { type: 'integer' },
          detail: { type: 'string' },
        },
      },
    },
  },
});

/** The module-wide header name, `required` and `maxKeyLength`, once a module is configured. */
let moduleDefaults = { headerName: IDEMPOTENCY_KEY_HEADER, required: false, maxKeyLength: MAX_KEY_BYTES };

/**
 * Records the module-wide `headerName`/`required`/`maxKeyLength` the docs show for routes that do
 * not set their own. Process-wide: with several differently configured modules in one process,
 * the last wins.
 * @internal
 */
export function useModuleDocDefaults(defaults: { headerName: string; required: boolean; maxKeyLength?: number }): void {
  moduleDefaults = {
    headerName: defaults.headerName,
    required: defaults.required,
    maxKeyLength: defaults.maxKeyLength ?? MAX_KEY_BYTES,
  };
}

/** The key header's description, with the longest key a route takes. */
const DESCRIPTION = (max: number): string =>
  `Client-chosen key (1-${max} bytes; bare or an RFC 8941 string) that makes a retry replay the first response instead of running again.`;

/** Stands in for the header name until the document is built. */
const PENDING_NAME = 'x-nestjs-idempotent-key-header';

/**
 * Documents an idempotent route (or every route of a controller) for OpenAPI: the key header and
 * the 400/409/413/422/503 answers. Nothing when `@nestjs/swagger` is not installed.
 *
 * Decorators run before the module is configured, so the header's name and `required` are read
 * when the document is built: the route's own options, else its controller's, else the module's.
 * @internal
 */
export function documentIdempotentRoute(target: object, key?: string | symbol, descriptor?: PropertyDescriptor): void {
  const s = loadSwagger();
  if (s === null) return;
  const decorator = applyDecorators(
    s.ApiHeader({
      name: PENDING_NAME,
      description: DESCRIPTION(MAX_KEY_BYTES),
      schema: { type: 'string', maxLength: MAX_KEY_BYTES },
    }),
    s.ApiResponse({ status: 400, ...problem('Missing (when required) or malformed idempotency key') }),
    s.ApiResponse({ status: 409, ...problem('A request with this key is still in progress; retry after Retry-After') }),
    s.ApiResponse({ status: 413, ...problem('The stored response was too large to replay') }),
    s.ApiResponse({ status: 422, ...problem('This key was already used for a different request') }),
    s.ApiResponse({ status: 503, ...problem('The idempotency store is unavailable; retry after Retry-After') }),
  );
  const owner = descriptor === undefined ? target : (target as { constructor: object }).constructor;
  const method = descriptor?.value as object | undefined;
  const options = () => {
    const own = method === undefined ? undefined : Reflect.getMetadata(IDEMPOTENT_METADATA, method);
    const controller = Reflect.getMetadata(IDEMPOTENT_METADATA, owner);
    return {
      headerName: (own?.headerName ?? controller?.headerName ?? moduleDefaults.headerName) as string,
      required: (own?.required ?? controller?.required ?? moduleDefaults.required) as boolean,
      maxKeyLength: (own?.maxKeyLength ?? controller?.maxKeyLength ?? moduleDefaults.maxKeyLength) as number,
    };
  };
  let entries: unknown[] | undefined;
  if (descriptor !== undefined) {
    (decorator as MethodDecorator)(target, key!, descriptor);
    entries = Reflect.getMetadata(s.DECORATORS?.API_PARAMETERS ?? 'swagger/apiParameters', method!);
  } else {
    (decorator as ClassDecorator)(target as never);
    entries = Reflect.getMetadata(s.DECORATORS?.API_HEADERS ?? 'swagger/apiHeaders', target);
  }
  const header = entries?.find((e) => (e as { name?: unknown }).name === PENDING_NAME);
  if (header === undefined) return;
  Object.defineProperty(header, 'name', { get: () => options().headerName, enumerable: true, configurable: true });
  Object.defineProperty(header, 'required', { get: () => options().required, enumerable: true, configurable: true });
  Object.defineProperty(header, 'description', {
    get: () => DESCRIPTION(options().maxKeyLength),
    enumerable: true,
    configurable: true,
  });
  const schema = (header as { schema?: object }).schema;
  if (schema !== undefined) {
    Object.defineProperty(schema, 'maxLength', {
      get: () => options().maxKeyLength,
      enumerable: true,
      configurable: true,
    });
  }
}

import { applyDecorators } from '@nestjs/common';

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

/**
 * OpenAPI documentation for an idempotent route: the key header (required or not) and the
 * 400/409/413/422/503 answers. Nothing when `@nestjs/swagger` is not installed.
 * @internal
 */
export function idempotencyApiDocs(headerName: string, required: boolean): Array<MethodDecorator & ClassDecorator> {
  const s = loadSwagger();
  if (s === null) return [];
  return [
    applyDecorators(
      s.ApiHeader({
        name: headerName,
        required,
        description:
          'Client-chosen key (1-255 bytes; bare or an RFC 8941 string) that makes a retry replay the first response instead of running again.',
        schema: { type: 'string', maxLength: 255 },
      }),
      s.ApiResponse({
        status: 400,
        ...problem(required ? 'Missing or malformed idempotency key' : 'Malformed idempotency key'),
      }),
      s.ApiResponse({
        status: 409,
        ...problem('A request with this key is still in progress; retry after Retry-After'),
      }),
      s.ApiResponse({ status: 413, ...problem('The stored response was too large to replay') }),
      s.ApiResponse({ status: 422, ...problem('This key was already used for a different request') }),
      s.ApiResponse({ status: 503, ...problem('The idempotency store is unavailable; retry after Retry-After') }),
    ),
  ];
}

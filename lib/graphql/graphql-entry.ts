import type { CallHandler, ExecutionContext, Logger } from '@nestjs/common';
import { type CallAdapter, PASS } from '../calls/call-adapter';
import { fingerprintJson } from '../core/canonical-json';
import { IdempotencyKey } from '../core/idempotency-key';
import { storeKeyFor } from '../core/store-key';
import { callKeyOf, refusalProblem } from '../calls/handler-problems';
import { Problems } from '../calls/problem-details';
import { type HandlerBase, HandlerConfigs } from '../calls/handler-options';
import { principalOf, UnusableScopeError, UnusableScopeLog } from '../calls/principal';
import type { ValueAnswer, ValueRunner } from '../calls/value-runner';
import { callToken } from '../calls/call-token';
import { readKeyHeader } from '../calls/key-header';
import type { ResolvedIdempotencyOptions } from '../idempotency.options';
import { graphqlProblem } from './graphql-error';
import { resultOptions } from './graphql-types';
import { clientGoneSignal, graphqlRequestOf } from './graphql-http';
import { isRootMutationField, type ResolveInfoShape, resolveInfoOf } from './graphql-resolver';

const REUSED = 'mutation (field or arguments)';

/**
 * `@Idempotent()` on GraphQL mutation resolvers: the key from the HTTP request's key header (or the
 * `key` option, a function of the arguments and the GraphQL context), scoped to the principal as
 * for HTTP routes; the fingerprint from the field name and the canonical JSON of the arguments.
 *
 * - The first call gets the resolver's result as it returned it; the result is stored as JSON and
 *   later calls get it parsed (GraphQL then resolves the selection set on it).
 * - A conflict is a `GraphQLError` with `extensions.code` `IDEMPOTENCY_IN_FLIGHT` /
 *   `IDEMPOTENCY_KEY_REUSED` (see `IDEMPOTENCY_GRAPHQL_ERROR_CODES`) and the problem fields.
 * - One key guards one mutation field: a second field of the same operation (or batch) with the
 *   same key is refused with `IDEMPOTENCY_KEY_REUSED` instead of replaying the first.
 * - Only root mutation fields are guarded: on a query or field resolver, a class-wide
 *   `@Idempotent()` does nothing, and one on the method is an error.
 * @internal
 */
export class GraphqlEntry implements CallAdapter {
  readonly #handlers: HandlerConfigs<HandlerBase>;
  /**
   * The store keys each HTTP request (or, without one, each GraphQL context value) has used so
   * far: every operation of a batch gets its own context, but they share the request.
   */
  readonly #keysInRequest = new WeakMap<object, Set<string>>();
  readonly #unusableScopes = new UnusableScopeLog();

  constructor(
    moduleOptions: ResolvedIdempotencyOptions,
    private readonly runner: ValueRunner,
    private readonly skip: (context: ExecutionContext) => boolean,
    private readonly logger: Logger,
  ) {
    this.#handlers = new HandlerConfigs(moduleOptions, (base) => base);
  }

  /** Runs the call under idempotency; `PASS` when the resolver should just run. */
  process(context: ExecutionContext, next: CallHandler): Promise<unknown> | typeof PASS {
    const handler = this.#handlers.of(context);
    if (handler === null) return PASS;
    const info = resolveInfoOf(context.getArgByIndex(3));
    if (info === undefined || !isRootMutationField(info)) {
      if (!handler.onMethod) return PASS;
      throw new Error(
        `@Idempotent() guards GraphQL mutations only, but ${handler.name} resolved ` +
          `${info?.parentType?.name ?? '?'}.${info?.fieldName ?? '?'} of a ${info?.operation?.operation ?? 'non-mutation'} operation`,
      );
    }
    if (this.skip(context)) return PASS;

    const args: unknown = context.getArgByIndex(1);
    const graphqlContext: unknown = context.getArgByIndex(2);
    const req = graphqlRequestOf(graphqlContext);
    const options = handler.options;
    const clientKey = callKeyOf(
      () =>
        options.key !== undefined
          ? options.key(args, graphqlContext)
          : req === undefined
            ? undefined
            : readKeyHeader(req.headers, (req.raw ?? req).rawHeaders, options.headerKey),
      options.required,
      options.key === undefined ? `the ${options.headerName} header` : 'key option',
      options.maxKeyLength,
    );
    if (clientKey === undefined) return PASS;
    if (!(clientKey instanceof IdempotencyKey)) return Promise.reject(graphqlProblem(clientKey));
    // Scoped to the principal of the HTTP request, as for HTTP routes.
    let principal: string | undefined;
    try {
      principal = principalOf(options.scope, req);
    } catch (error) {
      if (!(error instanceof UnusableScopeError)) throw error;
      this.#unusableScopes.once(handler, handler.name, error, this.logger);
      return Promise.reject(graphqlProblem(Problems.scopeInvalid()));
    }
    const key = storeKeyFor(clientKey, principal);
    if (this.#usedInRequest(req ?? graphqlContext, key)) {
      return Promise.reject(
        graphqlProblem(
          refusalProblem(
            'key-reused',
            REUSED,
            'Another mutation field of this operation (or batch) already uses this idempotency key: one key guards one mutation.',
          ),
        ),
      );
    }
    const operation = operationOf(info);
    const fingerprint = handler.strategy.compute(operation, fingerprintJson(args) ?? '');
    return this.runner
      .run(
        {
          options,
          clientKey,
          key,
          fingerprint,
          label: `GRAPHQL ${operation}`,
          name: handler.name,
          stores: 'json',
          json: resultOptions((info as { schema?: unknown }).schema),
          claimFor: handler.wantsClaim ? callToken(context) : undefined,
          waitSignal: options.waitMs > 0 ? () => clientGoneSignal(graphqlContext, req) : undefined,
          transactional: handler.wantsTransaction,
        },
        () => next.handle(),
      )
      .then(answerOf);
  }

  /** Records `key` for the request; whether another mutation field of it had it already. */
  #usedInRequest(request: unknown, key: IdempotencyKey): boolean {
    if (typeof request !== 'object' || request === null) return false;
    let keys = this.#keysInRequest.get(request);
    if (keys === undefined) {
      keys = new Set();
      this.#keysInRequest.set(request, keys);
    }
    const text = key.toString();
    if (keys.has(text)) return true;
    keys.add(text);
    return false;
  }
}

/** `Mutation.<field>`: the operation the fingerprint covers, with the arguments. */
function operationOf(info: ResolveInfoShape): string {
  return `${info.parentType?.name ?? 'Mutation'}.${info.fieldName}`;
}

function answerOf(answer: ValueAnswer): unknown {
  if (answer.kind === 'value') return answer.value;
  throw graphqlProblem(refusalProblem(answer.reason, REUSED, answer.detail));
}

import type { CallHandler, ExecutionContext, Logger } from '@nestjs/common';
import { type CallAdapter, PASS } from '../calls/call-adapter';
import { canonicalJson, fingerprintJson } from '../core/canonical-json';
import { IdempotencyKey } from '../core/idempotency-key';
import { storeKeyFor } from '../core/store-key';
import { callKeyOf, refusalProblem } from '../calls/handler-problems';
import { type HandlerBase, HandlerConfigs } from '../calls/handler-options';
import type { ValueAnswer, ValueRunner } from '../calls/value-runner';
import { callToken } from '../calls/call-token';
import type { ProblemDetails } from '../calls/problem-details';
import type { ResolvedIdempotencyOptions } from '../idempotency.options';
import { type RpcHandlerKind, rpcHandlerKind, rpcPatterns } from './rpc-handler';
import { rpcProblem } from './rpc-exception';

/** A message or event handler under `@Idempotent()`, worked out once. */
interface RpcHandler extends HandlerBase {
  readonly kind: RpcHandlerKind;
  /** The declared pattern(s) as text: part of the fingerprint, and the label. */
  readonly pattern: string;
  readonly label: string;
  /**
   * For event handlers, the scope their keys are stored under: the handler itself, since every
   * handler of a pattern receives each event (shipping and email on `orders.placed`) and each is
   * its own operation. A message has one handler, which answers it.
   */
  readonly operation: string | undefined;
}

const REUSED = 'message (pattern or data)';
const DEFAULT_KEY_FIELD = 'idempotencyKey';

/**
 * `@Idempotent()` on microservice handlers (`@MessagePattern()`, `@EventPattern()`): the key from
 * the message (`data.idempotencyKey`, or the `key` option), the fingerprint from the pattern and
 * the canonical JSON of the data.
 *
 * - Message handlers: the first call gets the handler's result as it returned it (an
 *   Observable's last value); the result is stored as JSON and later calls get it parsed. A
 *   conflict throws an `RpcException` whose error is the problem body `{ type, title, status, detail }`.
 * - Event handlers: a duplicate (done, or in flight) is acknowledged without running the handler;
 *   nothing is thrown. Only that the handler ran is stored, not its value.
 * - No key: the handler runs unguarded; with `required: true`, a 400 problem is thrown.
 * - The store unreachable when claiming: a 503 problem (unless `failOpen`).
 * - The handler throwing: the key is released and the error rethrown.
 * @internal
 */
export class RpcEntry implements CallAdapter {
  readonly #handlers: HandlerConfigs<RpcHandler>;

  constructor(
    moduleOptions: ResolvedIdempotencyOptions,
    private readonly runner: ValueRunner,
    private readonly skip: (context: ExecutionContext) => boolean,
    private readonly logger: Logger,
  ) {
    this.#handlers = new HandlerConfigs(moduleOptions, (base, handler) => {
      const kind = rpcHandlerKind(handler);
      if (kind === undefined) return null;
      const patterns = rpcPatterns(handler);
      const pattern = patterns.map(patternText).join(' | ');
      return {
        ...base,
        kind,
        pattern,
        label: `${kind === 'event' ? 'EVENT' : 'MESSAGE'} ${pattern}`,
        operation: kind === 'event' ? `nestjs-idempotent event handler\n${base.name}` : undefined,
      };
    });
  }

  /** Runs the call under idempotency; `PASS` when the handler should just run. */
  process(context: ExecutionContext, next: CallHandler): Promise<unknown> | typeof PASS {
    const handler = this.#handlers.of(context);
    if (handler === null || this.skip(context)) return PASS;
    const data: unknown = context.getArgByIndex(0);
    const options = handler.options;
    const clientKey = callKeyOf(
      () => (options.key === undefined ? defaultKey(data) : options.key(data, context.getArgByIndex(1))),
      options.required,
      options.key === undefined ? 'data.idempotencyKey' : 'key option',
      options.maxKeyLength,
    );
    if (clientKey === undefined) return PASS;
    if (!(clientKey instanceof IdempotencyKey)) return this.#refuse(handler, clientKey);
    const body = fingerprintJson(data) ?? '';
    const fingerprint = handler.strategy.compute(`${handler.kind} ${handler.pattern}`, body);
    return this.runner
      .run(
        {
          options,
          clientKey,
          key: storeKeyFor(clientKey, handler.operation),
          fingerprint,
          label: handler.label,
          name: handler.name,
          stores: handler.kind === 'message' ? 'json' : 'nothing',
          claimFor: handler.wantsClaim ? callToken(context) : undefined,
          // A transport may deliver one request to every replica (Nest's Redis transport does):
          // a replica that finds the key in flight elsewhere waits for that run's answer instead
          // of refusing a request that is not a retry.
          waitsForOtherInstances: handler.kind === 'message',
          transactional: handler.wantsTransaction,
        },
        () => next.handle(),
      )
      .then((answer) => this.#answer(handler, answer));
  }

  #answer(handler: RpcHandler, answer: ValueAnswer): unknown {
    if (answer.kind === 'value') return answer.replayed && handler.kind === 'event' ? undefined : answer.value;
    if (handler.kind === 'event') {
      switch (answer.reason) {
        case 'in-flight':
          return undefined; // a duplicate of an event still being handled: acknowledged
        case 'key-reused':
          this.logger.warn(
            `${handler.name} dropped an event whose idempotency key was already used for a different event`,
          );
          return undefined;
        case 'completion-failed':
        case 'unsupported-result':
        case 'response-too-large':
          return undefined; // the handler ran; logged by the runner
        case 'store-unavailable':
        case 'record-unreadable':
          break; // not handled: thrown, so a transport that redelivers can
      }
    }
    throw rpcProblem(refusalProblem(answer.reason, REUSED, answer.detail));
  }

  #refuse(handler: RpcHandler, problem: ProblemDetails): Promise<never> {
    // Nest does not log an RpcException, and an event has nobody to tell: say so here.
    if (handler.kind === 'event') this.logger.warn(`${handler.name} refused an event: ${problem.detail}`);
    return Promise.reject(rpcProblem(problem));
  }
}

/** `data.idempotencyKey` when `data` is an object. */
function defaultKey(data: unknown): unknown {
  return typeof data === 'object' && data !== null ? (data as Record<string, unknown>)[DEFAULT_KEY_FIELD] : undefined;
}

function patternText(pattern: unknown): string {
  return typeof pattern === 'string' ? pattern : (canonicalJson(pattern) ?? String(pattern));
}

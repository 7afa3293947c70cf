import { ROUTE_ARGS_METADATA } from '@nestjs/common/constants';

/*
 * What `@MessagePattern()` / `@EventPattern()` of @nestjs/microservices write on a handler, read
 * without loading that package (an optional peer). test/rpc/rpc-metadata.spec.ts pins every value
 * here against the installed package, so a Nest upgrade that changes one fails loudly.
 */

/** `PATTERN_METADATA`: the handler's patterns, as a list. */
export const PATTERN_METADATA = 'microservices:pattern';
/** `PATTERN_HANDLER_METADATA`: `PatternHandler.MESSAGE` (1) or `PatternHandler.EVENT` (2). */
export const PATTERN_HANDLER_METADATA = 'microservices:handler_type';
/** `TRANSPORT_METADATA`: the transport the handler is bound to, if any. */
export const TRANSPORT_METADATA = 'microservices:transport';

const PATTERN_HANDLER_MESSAGE = 1;
const PATTERN_HANDLER_EVENT = 2;
/** `Transport.GRPC`. */
const TRANSPORT_GRPC = 4;

/**
 * The parameters Nest hands a message handler that declares none (`DEFAULT_CALLBACK_METADATA`:
 * the payload, through the bound pipes), and a gRPC one (`DEFAULT_GRPC_CALLBACK_METADATA`).
 * Keys are `<RpcParamtype>:<index>`: PAYLOAD = 3, CONTEXT = 6, GRPC_CALL = 9.
 */
const PAYLOAD_KEY = '3:0';
export const DEFAULT_RPC_ARGUMENTS = Object.freeze({ [PAYLOAD_KEY]: { index: 0, data: undefined, pipes: [] } });
export const DEFAULT_GRPC_ARGUMENTS = Object.freeze({
  '6:1': { index: 1, data: undefined, pipes: [] },
  '9:2': { index: 2, data: undefined, pipes: [] },
  ...DEFAULT_RPC_ARGUMENTS,
});

/** Whether a message handler answers (`message`) or only consumes (`event`). */
export type RpcHandlerKind = 'message' | 'event';

/** The kind of a microservice handler, or `undefined` for a function that is none. @internal */
export function rpcHandlerKind(handler: unknown): RpcHandlerKind | undefined {
  if (typeof handler !== 'function') return undefined;
  const type: unknown = Reflect.getMetadata(PATTERN_HANDLER_METADATA, handler);
  if (type === PATTERN_HANDLER_MESSAGE) return 'message';
  if (type === PATTERN_HANDLER_EVENT) return 'event';
  return undefined;
}

/** The patterns a handler declares. @internal */
export function rpcPatterns(handler: object): readonly unknown[] {
  const patterns: unknown = Reflect.getMetadata(PATTERN_METADATA, handler);
  return Array.isArray(patterns) ? patterns : [];
}

/**
 * Gives a message handler that declares no parameters the arguments Nest would have given it
 * (its payload, through the bound pipes), once `@Idempotent()` added its hidden parameter: Nest
 * uses its defaults only for handlers without any parameter metadata.
 *
 * Called when the handler's decorators have all run (a method decorator cannot tell whether a
 * `@MessagePattern()` below it comes next), and a no-op for anything but a message handler.
 * @internal
 */
export function addDefaultRpcArguments(host: object, key: string | symbol, handler: unknown): void {
  if (rpcHandlerKind(handler) === undefined) return;
  const args = (Reflect.getMetadata(ROUTE_ARGS_METADATA, host, key) ?? {}) as Record<string, { index: number }>;
  if (PAYLOAD_KEY in args) return; // added already
  const defaults =
    Reflect.getMetadata(TRANSPORT_METADATA, handler as object) === TRANSPORT_GRPC
      ? DEFAULT_GRPC_ARGUMENTS
      : DEFAULT_RPC_ARGUMENTS;
  Reflect.defineMetadata(ROUTE_ARGS_METADATA, { ...args, ...defaults }, host, key);
}

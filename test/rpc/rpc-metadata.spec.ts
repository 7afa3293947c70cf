/**
 * Pins what lib/rpc/rpc-handler.ts reads from @nestjs/microservices by name (so the library never
 * loads that optional package): a Nest upgrade that changes any of it fails here.
 */
import { ROUTE_ARGS_METADATA } from '@nestjs/common/constants';
import { EventPattern, GrpcMethod, MessagePattern, Transport } from '@nestjs/microservices';
import {
  PARAM_ARGS_METADATA,
  PATTERN_HANDLER_METADATA as NEST_PATTERN_HANDLER,
  PATTERN_METADATA as NEST_PATTERN,
  TRANSPORT_METADATA as NEST_TRANSPORT,
} from '@nestjs/microservices/constants';
import {
  DEFAULT_CALLBACK_METADATA,
  DEFAULT_GRPC_CALLBACK_METADATA,
} from '@nestjs/microservices/context/rpc-metadata-constants';
import {
  DEFAULT_GRPC_ARGUMENTS,
  DEFAULT_RPC_ARGUMENTS,
  PATTERN_HANDLER_METADATA,
  PATTERN_METADATA,
  rpcHandlerKind,
  rpcPatterns,
  TRANSPORT_METADATA,
} from '../../lib/rpc/rpc-handler';

describe('@nestjs/microservices metadata the library relies on', () => {
  it('metadata keys', () => {
    expect(PATTERN_METADATA).toBe(NEST_PATTERN);
    expect(PATTERN_HANDLER_METADATA).toBe(NEST_PATTERN_HANDLER);
    expect(TRANSPORT_METADATA).toBe(NEST_TRANSPORT);
    // Message handlers read their parameters from the same metadata as routes.
    expect(PARAM_ARGS_METADATA).toBe(ROUTE_ARGS_METADATA);
  });

  it('the default arguments of handlers without parameter decorators', () => {
    expect(DEFAULT_RPC_ARGUMENTS).toEqual(DEFAULT_CALLBACK_METADATA);
    expect(DEFAULT_GRPC_ARGUMENTS).toEqual(DEFAULT_GRPC_CALLBACK_METADATA);
  });

  it('handler kinds, patterns and the gRPC transport as the decorators write them', () => {
    class Handlers {
      @MessagePattern({ cmd: 'sum' })
      message() {}
      @EventPattern(['a', 'b'])
      event() {}
      @GrpcMethod('Svc', 'Call')
      grpc() {}
      plain() {}
    }
    const p = Handlers.prototype;
    expect(rpcHandlerKind(p.message)).toBe('message');
    expect(rpcHandlerKind(p.event)).toBe('event');
    expect(rpcHandlerKind(p.plain)).toBeUndefined();
    expect(rpcPatterns(p.message)).toEqual([{ cmd: 'sum' }]);
    expect(rpcPatterns(p.event)).toEqual(['a', 'b']);
    expect(Reflect.getMetadata(TRANSPORT_METADATA, p.grpc)).toBe(Transport.GRPC);
    expect(Transport.GRPC).toBe(4);
  });
});

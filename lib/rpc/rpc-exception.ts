import type { ProblemDetails } from '../calls/problem-details';

/** The part of `@nestjs/microservices` this library uses. */
interface Microservices {
  RpcException: new (error: string | object) => Error;
}

let microservices: Microservices | undefined;

/**
 * `@nestjs/microservices`, required only when a message handler needs an answer from this
 * library (it is an optional peer dependency, always there when a message arrives).
 */
function loadMicroservices(): Microservices {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (microservices ??= require('@nestjs/microservices') as Microservices);
}

/**
 * The `RpcException` a message handler throws for `problem`: its error object is the problem body
 * `{ type, title, status, detail }`, which Nest's RPC exception filter sends the client as it is.
 * @internal
 */
export function rpcProblem(problem: ProblemDetails): Error {
  const { type, title, status, detail } = problem;
  return new (loadMicroservices().RpcException)({ type, title, status, detail });
}

/*
 * What @nestjs/graphql writes on a resolver method, read without loading that package (an
 * optional peer). test/graphql/graphql-metadata.spec.ts pins the values against the installed
 * package.
 */

/** `RESOLVER_TYPE_METADATA`: `'Query'`, `'Mutation'`, `'Subscription'` or an object type's name. */
export const RESOLVER_TYPE_METADATA = 'graphql:resolver_type';

/** `Resolver.MUTATION`. */
const MUTATION = 'Mutation';

/** Whether `handler` is a `@Mutation()` resolver. @internal */
export function isMutationResolver(handler: unknown): boolean {
  return typeof handler === 'function' && Reflect.getMetadata(RESOLVER_TYPE_METADATA, handler) === MUTATION;
}

/** The parts of graphql-js's `GraphQLResolveInfo` this library reads. */
export interface ResolveInfoShape {
  readonly fieldName: string;
  readonly parentType?: { readonly name?: string };
  /** The operation; `operation.operation` is `'query'`, `'mutation'` or `'subscription'`. */
  readonly operation?: { readonly operation?: string };
  /** The response path; a root field's has no `prev`. */
  readonly path?: { readonly prev?: unknown; readonly key?: string | number };
}

/** The resolve info of a field resolution, when `value` looks like one. @internal */
export function resolveInfoOf(value: unknown): ResolveInfoShape | undefined {
  return typeof value === 'object' && value !== null && typeof (value as ResolveInfoShape).fieldName === 'string'
    ? (value as ResolveInfoShape)
    : undefined;
}

/** Whether the field resolved is a root field of a mutation operation. @internal */
export function isRootMutationField(info: ResolveInfoShape): boolean {
  return info.operation?.operation === 'mutation' && info.path?.prev === undefined;
}

import type { JsonReviveOptions, JsonValueOptions } from '../core/json-value';

/*
 * A replayed mutation result must still resolve its union and interface types. Nest resolves
 * them by `instanceof` (or by a `resolveType` of the app's, often the same), and a replay is
 * parsed JSON: plain objects. So the GraphQL object type of every class instance in a result is
 * stored beside its JSON, and on replay each such object gets its class's prototype back (when
 * the class is known in this process) and a `__typename`, which Nest's resolvers fall back to.
 */

/** The part of graphql-js's `GraphQLSchema` read here. */
interface SchemaShape {
  getType(name: string): unknown;
}

/** The part of `graphql` used here (an optional peer, loaded only for resolvers). */
interface GraphQLModule {
  isObjectType(type: unknown): boolean;
}

type Constructor = abstract new (...args: never[]) => object;

/** What the value runner needs to store and revive the results of one schema. */
type TypeOptions = JsonValueOptions & JsonReviveOptions;

const bySchema = new WeakMap<object, TypeOptions>();
const withoutSchema: TypeOptions = Object.freeze({ keepDates: true });

/**
 * How a mutation's result is stored for `schema` (from the resolver's `info.schema`): `Date`s and
 * GraphQL object types kept. @internal
 */
export function resultOptions(schema: unknown): TypeOptions {
  if (typeof schema !== 'object' || schema === null || typeof (schema as SchemaShape).getType !== 'function') {
    return withoutSchema;
  }
  let options = bySchema.get(schema);
  if (options === undefined) {
    options = typeOptions(schema as SchemaShape);
    bySchema.set(schema, options);
  }
  return options;
}

function typeOptions(schema: SchemaShape): TypeOptions {
  // The classes seen in results, by GraphQL type name: replays find them even when Nest's type
  // metadata cannot be read.
  const classes = new Map<string, Constructor>();
  const names = new WeakMap<Constructor, string | null>();
  return {
    keepDates: true,
    typeOf(object) {
      const ctor = (Object.getPrototypeOf(object) as { constructor?: unknown } | null)?.constructor;
      if (typeof ctor !== 'function' || ctor === Object) return undefined;
      let name = names.get(ctor as Constructor);
      if (name === undefined) {
        name = objectTypeName(schema, ctor as Constructor) ?? null;
        names.set(ctor as Constructor, name);
        if (name !== null) classes.set(name, ctor as Constructor);
      }
      return name ?? undefined;
    },
    revive(object, name) {
      let ctor = classes.get(name);
      if (ctor === undefined) {
        ctor = classOfType(name);
        if (ctor !== undefined) classes.set(name, ctor);
      }
      if (ctor !== undefined && Object.getPrototypeOf(object) === Object.prototype) {
        Object.setPrototypeOf(object, ctor.prototype);
      }
      Object.defineProperty(object, '__typename', { value: name, configurable: true, writable: true });
      return object;
    },
  };
}

/** The name of the GraphQL object type of instances of `ctor` in `schema`, if it has one. */
function objectTypeName(schema: SchemaShape, ctor: Constructor): string | undefined {
  const graphql = loadGraphQL();
  const declared = nestObjectTypes()?.find((t) => t.target === ctor)?.name;
  for (const name of declared === undefined ? [ctor.name] : [declared, ctor.name]) {
    if (graphql?.isObjectType(schema.getType(name))) return name;
  }
  return undefined;
}

/** The class Nest declared for the object type `name` (code first), if its metadata can be read. */
function classOfType(name: string): Constructor | undefined {
  return nestObjectTypes()?.find((t) => t.name === name)?.target;
}

/** The object types `@ObjectType()` declared (`@nestjs/graphql`'s metadata), or `undefined`. */
function nestObjectTypes(): readonly { name: string; target: Constructor }[] | undefined {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const storage = (require('@nestjs/graphql') as { TypeMetadataStorage?: { getObjectTypesMetadata(): unknown } })
      .TypeMetadataStorage;
    const types = storage?.getObjectTypesMetadata();
    return Array.isArray(types) ? (types as { name: string; target: Constructor }[]) : undefined;
  } catch {
    return undefined;
  }
}

let graphqlModule: GraphQLModule | null | undefined;

function loadGraphQL(): GraphQLModule | null {
  if (graphqlModule === undefined) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      graphqlModule = require('graphql') as GraphQLModule;
    } catch {
      graphqlModule = null;
    }
  }
  return graphqlModule;
}

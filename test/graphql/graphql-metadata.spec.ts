/**
 * Pins what lib/graphql reads from @nestjs/graphql by name (so the library never loads that
 * optional package): a Nest upgrade that changes any of it fails here.
 */
import { ROUTE_ARGS_METADATA } from '@nestjs/common/constants';
import { Mutation, Query, ResolveField, Resolver } from '@nestjs/graphql';
import {
  PARAM_ARGS_METADATA,
  RESOLVER_TYPE_METADATA as NEST_RESOLVER_TYPE,
} from '@nestjs/graphql/dist/graphql.constants';
import { isMutationResolver, RESOLVER_TYPE_METADATA } from '../../lib/graphql/graphql-resolver';

describe('@nestjs/graphql metadata the library relies on', () => {
  it('metadata keys', () => {
    expect(RESOLVER_TYPE_METADATA).toBe(NEST_RESOLVER_TYPE);
    expect(PARAM_ARGS_METADATA).toBe(ROUTE_ARGS_METADATA);
  });

  it('only @Mutation() is a mutation resolver', () => {
    @Resolver()
    class Resolvers {
      @Mutation(() => String)
      change() {
        return '';
      }
      @Query(() => String)
      read() {
        return '';
      }
      @ResolveField(() => String)
      field() {
        return '';
      }
    }
    const p = Resolvers.prototype;
    expect(isMutationResolver(p.change)).toBe(true);
    expect(isMutationResolver(p.read)).toBe(false);
    expect(isMutationResolver(p.field)).toBe(false);
  });
});

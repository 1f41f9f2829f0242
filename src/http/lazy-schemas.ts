import ValidatorSelector from '@fastify/ajv-compiler';
import SerializerSelector from '@fastify/fast-json-stringify-compiler';
import type { FastifyServerOptions } from 'fastify';

type Factory = NonNullable<
  NonNullable<FastifyServerOptions['schemaController']>['compilersFactory']
>;
type Validate = ((data: unknown) => unknown) & { errors?: unknown };

/**
 * Fastify's own schema compilers (ajv for input, fast-json-stringify for answers), each route's
 * schema compiled when that route is first used instead of at start-up. Compiling the schemas of
 * some sixty routes is most of an empty start's CPU once the modules are bundled (about 200 ms),
 * while a route's first request pays only its own few milliseconds. For fastify's
 * `schemaController.compilersFactory`; the compiled functions are exactly the default ones.
 */
export const lazySchemaCompilers: Factory = {
  buildValidator: ((externalSchemas, options) => {
    // Even the ajv instance is made on first use: adding the shared schemas to it compiles
    // JSON Schema's meta-schema, about 130 ms.
    let compile: ((route: unknown) => Validate) | undefined;
    return (route: unknown) => {
      let fn: Validate | undefined;
      const validate: Validate = (data) => {
        compile ??= ValidatorSelector()(externalSchemas as never, options as never) as (
          route: unknown,
        ) => Validate;
        fn ??= compile(route);
        const result = fn(data);
        // Fastify reads a failed validation's details from the function it was given.
        validate.errors = fn.errors;
        return result;
      };
      return validate;
    };
  }) as NonNullable<Factory['buildValidator']>,
  buildSerializer: ((externalSchemas, options) => {
    type Compile = (route: unknown) => (data: unknown) => string;
    let compile: Compile | undefined;
    return (route: unknown) => {
      let fn: ((data: unknown) => string) | undefined;
      return (data: unknown) =>
        (fn ??= (compile ??= SerializerSelector()(
          externalSchemas as never,
          options as never,
        ) as Compile)(route))(data);
    };
  }) as NonNullable<Factory['buildSerializer']>,
};

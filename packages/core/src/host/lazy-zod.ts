import type * as zodModule from 'zod';
// Node's built-ins by getBuiltinModule, taken when this module loads: an ES import of a built-in
// also builds its ES facade, which every host would pay for at start-up (docs/benchmarks.md, Start-up).
const { createRequire } = process.getBuiltinModule('node:module');
const { fileURLToPath } = process.getBuiltinModule('node:url');

/** zod's `z` namespace. */
export type Zod = typeof zodModule.z;

let loaded: Zod | undefined;

/**
 * zod, loaded on first use and synchronously: options are validated in constructors, manifests
 * in synchronous calls. Importing core (or the umbrella) therefore loads no zod (issue 15).
 *
 * The CommonJS build requires zod's CommonJS build, as a `require('zod')` of the host would. The
 * ES build requires zod's ES build (`require()` of an ES module, Node 20.19 and later), which is
 * the instance a host's own `import 'zod'` gets, so that a host using zod holds one copy of it;
 * where Node refuses that (`--no-experimental-require-module`, or zod still loading
 * asynchronously) it falls back to the CommonJS build.
 */
export function zod(): Zod {
  loaded ??= load();
  return loaded;
}

/** What Node throws when it will not `require()` an ES module now. */
const REQUIRE_ESM_REFUSED = new Set(['ERR_REQUIRE_ESM', 'ERR_REQUIRE_ASYNC_MODULE', 'ERR_REQUIRE_CYCLE_MODULE']);

function load(): Zod {
  const require = createRequire(import.meta.url);
  // Undefined in the CommonJS build (core's tsup.config.ts defines it away).
  if (typeof import.meta.resolve === 'function') {
    try {
      return (require(fileURLToPath(import.meta.resolve('zod'))) as typeof zodModule).z;
    } catch (error) {
      if (!REQUIRE_ESM_REFUSED.has((error as NodeJS.ErrnoException)?.code ?? '')) throw error;
    }
  }
  return (require('zod') as typeof zodModule).z;
}

/**
 * A schema built on its first call, once, with `z`: what a module exports instead of a schema
 * built at import time, so that importing it costs nothing until something is validated.
 *
 * ```ts
 * const myOptionsSchema = lazySchema(() => backendOptionsSchema().extend({ replicas: option.int(1, 64).optional() }));
 * myOptionsSchema().parse(options); // zod loads and the schema is built here, the first time
 * ```
 */
export function lazySchema<T>(build: (z: Zod) => T): () => T {
  let schema: T | undefined;
  return () => {
    schema ??= buildSaying(build);
    return schema;
  };
}

/**
 * zod (4.6) walks its own tables with `for…in`, which takes a key someone added to
 * `Object.prototype` as enumerable (a library's `Object.prototype.x = …`) for one of its own, and
 * fails building any schema with a TypeError from inside it: said as the cause it is.
 */
function buildSaying<T>(build: (z: Zod) => T): T {
  try {
    return build(zod());
  } catch (error) {
    const added: string[] = [];
    for (const key in {}) added.push(key);
    if (added.length === 0) throw error;
    const keys = added.map((key) => JSON.stringify(key)).join(', ');
    throw new Error(
      `zod, which validates options and requests, cannot build its schemas in a process whose Object.prototype has enumerable keys added to it (${keys}, by the host or a library it loads: Object.prototype.x = …): define them with Object.defineProperty (not enumerable), or remove them (${(error as Error)?.message})`,
      { cause: error },
    );
  }
}

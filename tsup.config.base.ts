import { defineConfig, type Options } from 'tsup';

/**
 * The CommonJS build's `import.meta.url`, which the worker-pool and subprocess packages use to find
 * their runner entry next to their own module (and core to require zod beside it). tsup's own shim
 * (`new URL("file:" + __filename)`) does not escape the path: in a project under `a#b` or `100%25`
 * it names another file. `pathToFileURL` escapes it.
 */
const CJS_MODULE_URL = 'var __kbModuleUrl = require("node:url").pathToFileURL(__filename).href;';

/** One build recipe for every package: dual ESM/CJS with types, node 20 target. */
export function libraryConfig(entry: Record<string, string>, extra: Options = {}) {
  const { esbuildOptions: packageOptions, ...rest } = extra;
  return defineConfig({
    entry,
    format: ['esm', 'cjs'],
    dts: true,
    clean: true,
    sourcemap: true,
    target: 'node20',
    platform: 'node',
    splitting: false,
    treeshake: true,
    ...rest,
    esbuildOptions(options, context) {
      if (context.format === 'cjs') {
        options.define = { ...options.define, 'import.meta.url': '__kbModuleUrl' };
        options.banner = { ...options.banner, js: options.banner?.js ? `${options.banner.js}\n${CJS_MODULE_URL}` : CJS_MODULE_URL };
      }
      packageOptions?.(options, context);
    },
  });
}

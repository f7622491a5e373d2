import { defineConfig, type Options } from 'tsup';

/**
 * One build recipe for every package: dual ESM/CJS with types, node 20 target.
 * `shims: true` gives the CJS build a working `import.meta.url`, which the worker-pool and
 * subprocess packages use to find their runner entry next to their own module.
 */
export function libraryConfig(entry: Record<string, string>, extra: Options = {}) {
  return defineConfig({
    entry,
    format: ['esm', 'cjs'],
    dts: true,
    clean: true,
    sourcemap: true,
    target: 'node20',
    platform: 'node',
    shims: true,
    splitting: false,
    treeshake: true,
    ...extra,
  });
}

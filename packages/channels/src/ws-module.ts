import type * as wsModule from 'ws';
// Node's built-ins by getBuiltinModule, taken when this module loads: an ES import of a built-in
// also builds its ES facade, which every host would pay for at start-up (docs/benchmarks.md, Start-up).
const { createRequire } = process.getBuiltinModule('node:module');

let loaded: typeof wsModule | undefined;

/**
 * ws, required when the first channel is mounted rather than when the package is imported
 * (issue 15: the umbrella re-exports this package). ws's ES entry only wraps its CommonJS one,
 * so this is the same instance an `import 'ws'` of the host gets.
 */
export function ws(): typeof wsModule {
  loaded ??= createRequire(import.meta.url)('ws') as typeof wsModule;
  return loaded;
}

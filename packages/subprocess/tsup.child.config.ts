import { libraryConfig } from '../../tsup.config.base';

// The script each child process runs, found next to the backend's own module at run time, with
// core's runner entry bundled into it: resolving it through node_modules (symlinks, package.json
// exports) at every start cost the child ~2 ms. The backend itself (tsup.config.ts) imports core
// as a normal dependency; built with it, core's runner would be bundled into the backend as well,
// a second copy of its error classes among them. CommonJS only (a CommonJS main starts sooner).
export default libraryConfig(
  { 'child-entry': 'src/runner/child-entry.ts' },
  { noExternal: [/^@kb-labs\/plugin-execution-core\/runner$/], format: ['cjs'], dts: false, clean: false },
);

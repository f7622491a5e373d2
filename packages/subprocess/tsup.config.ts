import { libraryConfig } from '../../tsup.config.base';

// Entries: the backend; the script each child process runs, found next to the backend's own
// module at run time; and the empty module a child imports to warm up Node's ES module loader. Core's runner entry is bundled into the child script:
// resolving it through node_modules (symlinks, package.json exports) at every start cost the
// child ~2 ms; the backend itself keeps importing core as a normal dependency.
export default libraryConfig(
  { index: 'src/index.ts', 'child-entry': 'src/runner/child-entry.ts', warmup: 'src/runner/warmup.ts' },
  { noExternal: [/^@kb-labs\/plugin-execution-core\/runner$/] },
);

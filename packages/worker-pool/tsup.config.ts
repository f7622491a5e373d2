import { libraryConfig } from '../../tsup.config.base';

// The worker entry is its own build entry: piscina loads it in each thread, found next to
// index.js / index.cjs at run time.
export default libraryConfig({ index: 'src/index.ts', 'worker-entry': 'src/worker-entry.ts' });

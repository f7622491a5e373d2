import { libraryConfig } from '../../tsup.config.base';

// The worker entry is its own build entry: each thread loads it, found next to index.js /
// index.cjs at run time; so is what Workers a handler starts preload (inspector-preload.ts).
export default libraryConfig({ index: 'src/index.ts', 'worker-entry': 'src/worker-entry.ts', 'inspector-preload': 'src/inspector-preload.ts' });

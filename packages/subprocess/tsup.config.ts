import { libraryConfig } from '../../tsup.config.base';

// The backend, and the empty module a child imports to warm up Node's ES module loader. The
// script each child process runs is built apart (tsup.child.config.ts, after this one: this one
// cleans dist/), so that core's runner bundled into it is not bundled into the backend too.
export default libraryConfig({ index: 'src/index.ts', warmup: 'src/runner/warmup.ts' });

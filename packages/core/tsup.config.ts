import { libraryConfig } from '../../tsup.config.base';

// Three entries that share modules (the error classes above all): split into shared chunks, so
// that `instanceof HandlerError` holds whichever entry a class came from (both builds: tsup
// splits the CommonJS one too when asked).
export default libraryConfig({ index: 'src/index.ts', 'backend-kit': 'src/backend-kit.ts', runner: 'src/runner.ts' }, { splitting: true });

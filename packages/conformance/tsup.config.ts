import { libraryConfig } from '../../tsup.config.base';

// ES modules only, as vitest, whose describe() the suite calls, is; the fixture plugins are not
// built: they ship as they are, beside dist/, where fixtures.ts finds them.
export default libraryConfig({ index: 'src/index.ts', fixtures: 'src/fixtures.ts', 'hostile-matrix': 'src/hostile-matrix.ts' }, { format: ['esm'], splitting: true });

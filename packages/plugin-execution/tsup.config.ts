import { libraryConfig } from '../../tsup.config.base';

export default libraryConfig(
  { index: 'src/index.ts', cli: 'src/cli.ts' },
  {
    // In the CJS build, lazy backend imports become lazy require()s, so a CommonJS host gets the
    // backends' CJS builds and one copy of core: `instanceof` on returned errors keeps working.
    esbuildOptions(options, context) {
      if (context.format === 'cjs') options.supported = { ...options.supported, 'dynamic-import': false };
    },
  },
);

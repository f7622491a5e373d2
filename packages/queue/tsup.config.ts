import { libraryConfig } from '../../tsup.config.base';

export default libraryConfig(
  { index: 'src/index.ts' },
  {
    // As in the umbrella: in the CJS build, a worker's lazy import of its local backend becomes a
    // lazy require(), so a CommonJS worker gets that backend's CJS build and one copy of core.
    esbuildOptions(options, context) {
      if (context.format === 'cjs') options.supported = { ...options.supported, 'dynamic-import': false };
    },
  },
);

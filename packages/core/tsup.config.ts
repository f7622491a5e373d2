import { libraryConfig } from '../../tsup.config.base';

// Four entries that share modules (the error classes above all): split into shared chunks, so
// that `instanceof HandlerError` holds whichever entry a class came from (both builds: tsup
// splits the CommonJS one too when asked).
// The CommonJS build has no `import.meta.resolve`: defined away there, so that lazy-zod.ts
// requires zod's CommonJS build (and esbuild has no empty `import.meta` to warn about).
export default libraryConfig(
  { index: 'src/index.ts', 'backend-kit': 'src/backend-kit.ts', 'host-kit': 'src/host-kit.ts', runner: 'src/runner.ts' },
  {
    splitting: true,
    esbuildOptions(options, context) {
      if (context.format === 'cjs') options.define = { ...options.define, 'import.meta.resolve': 'undefined' };
    },
  },
);

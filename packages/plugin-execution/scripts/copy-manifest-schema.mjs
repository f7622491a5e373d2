// Copies core's dist/kb.plugin.schema.json (the manifest's JSON Schema) into this package's dist:
// a project that installed only the umbrella (pnpm's strict node_modules has no core at its top)
// points a manifest's "$schema" at node_modules/@kb-labs/plugin-execution/dist/kb.plugin.schema.json.
import { copyFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const schema = createRequire(import.meta.url).resolve('@kb-labs/plugin-execution-core/kb.plugin.schema.json');
copyFileSync(schema, new URL('../dist/kb.plugin.schema.json', import.meta.url));

// Writes dist/kb.plugin.schema.json, the JSON Schema of a plugin manifest, from the zod schema the
// runtime validates with (so the two cannot drift). Editors use it through a manifest's "$schema".
import { writeFileSync } from 'node:fs';
import { z } from 'zod';
import { pluginManifestSchema } from '../dist/index.js';

const schema = {
  ...z.toJSONSchema(pluginManifestSchema(), { io: 'input', unrepresentable: 'any' }),
  $id: 'https://kb-labs.dev/schemas/kb.plugin.schema.json',
  title: 'kb.plugin.json: a plugin manifest of @kb-labs/plugin-execution',
};
writeFileSync(new URL('../dist/kb.plugin.schema.json', import.meta.url), `${JSON.stringify(schema, null, 2)}\n`);

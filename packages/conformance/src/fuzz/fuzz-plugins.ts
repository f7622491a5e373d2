import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { PluginSource } from '@kb-labs/plugin-execution-core';
import { fixturePlugins } from '../fixtures.js';

/** The fuzz plugin's folder, registered by its own manifest (`@conformance/fuzz`). */
export const FUZZ_A = '@conformance/fuzz';
/** The same folder under another id, registered as `{ root, manifest }`. */
export const FUZZ_B = '@conformance/fuzz-b';

const manifest = JSON.parse(readFileSync(path.join(fixturePlugins.fuzz, 'kb.plugin.json'), 'utf8')) as Record<string, unknown>;

/** What `registerPlugin` is given for each of the two ids. */
export function fuzzPluginSource(pluginId: string): PluginSource {
  if (pluginId === FUZZ_A) return fixturePlugins.fuzz;
  return { root: fixturePlugins.fuzz, manifest: { ...manifest, id: pluginId } } as PluginSource;
}

import { pluginManifestSchema, type PluginManifest, type PluginManifestInput, type RegisteredPlugin } from '@kb-labs/plugin-execution-core';
import { parseWith, validationError } from '@kb-labs/plugin-execution-core/host-kit';

/** What mountWebSocketChannels() takes as its plugin: a manifest object (kb.plugin.json, parsed) or a registered plugin. */
export type ManifestSource = PluginManifestInput | PluginManifest | RegisteredPlugin;

const SUBJECT = 'Invalid plugin manifest for mountWebSocketChannels()';

/**
 * The manifest `source` gives, validated as kb.plugin.json is. A folder path or a `file:` URL
 * (what a backend's `plugins` take) is refused saying what to give instead, not only that it is
 * no object.
 */
export function mountedManifest(source: ManifestSource): PluginManifest {
  if (typeof source === 'string' || source instanceof URL) {
    const given = String(source);
    const file = JSON.stringify(given.endsWith('kb.plugin.json') ? given : `${given.replace(/\/+$/, '')}/kb.plugin.json`);
    const read = given.startsWith('file:') ? `new URL(${file})` : file;
    const message = `is a path (${JSON.stringify(given)}), not a manifest: give the manifest object, its kb.plugin.json parsed (JSON.parse(fs.readFileSync(${read}, 'utf8'))), or a registered plugin`;
    throw validationError(SUBJECT, [{ path: '(root)', message }]);
  }
  return parseWith(pluginManifestSchema(), isRegisteredPlugin(source) ? source.manifest : source, SUBJECT);
}

function isRegisteredPlugin(value: unknown): value is RegisteredPlugin {
  return typeof value === 'object' && value !== null && 'manifest' in value && 'root' in value && typeof (value as { manifest: unknown }).manifest === 'object';
}

import type { PluginManifest } from '@kb-labs/plugin-execution-core';

/**
 * What a handler's manifest declares it needs (the plugin's permissions and the handler's own),
 * as one text that is equal for equal declarations: the host checks its grant against its copy
 * of the manifest, a worker runs the handler under its own copy, so both must declare the same.
 */
export function declaredPermissionsKey(manifest: PluginManifest, handlerId: string): string {
  const handler = Object.hasOwn(manifest.handlers, handlerId) ? manifest.handlers[handlerId] : undefined;
  return JSON.stringify(sortedKeys({ plugin: manifest.permissions ?? null, handler: handler?.permissions ?? null }));
}

function sortedKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortedKeys);
  if (value === null || typeof value !== 'object') return value;
  const sorted: Record<string, unknown> = {};
  for (const key of Object.keys(value).sort()) sorted[key] = sortedKeys((value as Record<string, unknown>)[key]);
  return sorted;
}

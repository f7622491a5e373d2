import type { PluginManifest } from '@kb-labs/plugin-execution-core';

/** Keys made so far, by manifest (a reload or a new registration brings a new one) and handler. */
const made = new WeakMap<PluginManifest, Map<string, string>>();

/**
 * What a handler's manifest declares it needs (the plugin's permissions and the handler's own),
 * as one text that is equal for equal declarations: the host checks its grant against its copy
 * of the manifest, a worker runs the handler under its own copy, so both must declare the same.
 * Made once per manifest and handler: both sides ask for every execution.
 */
export function declaredPermissionsKey(manifest: PluginManifest, handlerId: string): string {
  let keys = made.get(manifest);
  if (keys === undefined) made.set(manifest, (keys = new Map()));
  let key = keys.get(handlerId);
  if (key === undefined) keys.set(handlerId, (key = makeKey(manifest, handlerId)));
  return key;
}

function makeKey(manifest: PluginManifest, handlerId: string): string {
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

import type { PluginManifest } from '@kb-labs/plugin-execution-core';
import { describe, expect, it } from 'vitest';
import { declaredPermissionsKey } from '../src/shared/declared-permissions.js';

/** A manifest of one handler `run`, declaring `plugin` and `handler` permissions. */
function manifestOf(plugin: unknown, handler: unknown): PluginManifest {
  return { id: '@t/p', version: '1.0.0', ...(plugin ? { permissions: plugin } : {}), handlers: { run: { entry: './run.mjs', export: 'default', ...(handler ? { permissions: handler } : {}) } } } as PluginManifest;
}

describe('declaredPermissionsKey', () => {
  it("is equal for the same declarations written in another key order (a host's manifest in its code, a worker's from kb.plugin.json)", () => {
    const host = manifestOf({ platform: { kv: ['get'], cache: true } }, { env: ['A'], platform: { store: ['read'], queue: true } });
    const worker = manifestOf({ platform: { cache: true, kv: ['get'] } }, { platform: { queue: true, store: ['read'] }, env: ['A'] });
    expect(declaredPermissionsKey(host, 'run')).toBe(declaredPermissionsKey(worker, 'run'));
  });

  it("differs where the plugin's or the handler's own declarations differ", () => {
    const key = declaredPermissionsKey(manifestOf({ platform: { kv: ['get'] } }, { env: ['A'] }), 'run');
    expect(declaredPermissionsKey(manifestOf(undefined, { env: ['A'] }), 'run')).not.toBe(key);
    expect(declaredPermissionsKey(manifestOf({ platform: { kv: ['get'] } }, undefined), 'run')).not.toBe(key);
    expect(declaredPermissionsKey(manifestOf({ platform: { kv: ['get'] } }, { env: ['B'] }), 'run')).not.toBe(key);
  });
});

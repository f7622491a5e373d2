import { PluginRegistry } from '@kb-labs/plugin-execution-core';
import { describe, expect, it } from 'vitest';
import { declaredByAll } from '../src/runner/local-backend.js';

/** A registry of one plugin whose handlers declare `needs`, in this order. */
function registryOf(needs: Record<string, unknown>): PluginRegistry {
  const registry = new PluginRegistry();
  const handlers = Object.fromEntries(Object.entries(needs).map(([name, permissions]) => [name, { entry: `./${name}.mjs`, export: 'default', permissions }]));
  registry.register({ root: '/nonexistent/declared-by-all', manifest: { id: '@t/declared-by-all', version: '1.0.0', handlers } });
  return registry;
}

describe('declaredByAll (what a worker grants when its operator sets no permissions)', () => {
  it('grants network and childProcess when any handler declares them, also one listed before a handler declaring them false', () => {
    const grant = declaredByAll(registryOf({ fetches: { network: true, childProcess: true }, offline: { network: false, childProcess: false, env: ['A'] } }));
    expect(grant).toMatchObject({ network: true, childProcess: true, env: ['A'] });
  });

  it('grants neither where no handler declares it', () => {
    const grant = declaredByAll(registryOf({ offline: { network: false }, plain: { env: ['B'] } }));
    expect(grant.network).not.toBe(true);
    expect(grant.childProcess).not.toBe(true);
  });
});

import { access } from 'node:fs/promises';
import path from 'node:path';
import type { PluginRegistry } from '@kb-labs/plugin-execution-core';
import { pluginVersionKey } from './peer-plugins.js';

/**
 * The handlers of this worker's plugins whose entry file is not there: a build not run, a package
 * not installed on this machine, while the manifest is. A task of such a handler is handed back to
 * the workers that have it built (worker-execution.ts), as one of a plugin this worker lacks is,
 * and a plugin with any such handler is left out of this worker's presence, so that its peers and
 * the hosts do not count on it. Looked for when the worker starts and at each presence (every
 * `heartbeatMs`), not at each task: a plugin built under a running worker is taken at its next.
 */
export class UnbuiltEntries {
  readonly #registry: PluginRegistry;
  /** `pluginVersionKey` + `#` + handler id, for each handler whose entry is missing. */
  #handlers = new Set<string>();
  /** `pluginVersionKey` of each plugin with such a handler. */
  #plugins = new Set<string>();
  #looking: Promise<void> | undefined;

  constructor(registry: PluginRegistry) {
    this.#registry = registry;
  }

  /** Look at the entry files again (one look at a time). */
  refresh(): Promise<void> {
    return (this.#looking ??= this.#look().finally(() => (this.#looking = undefined)));
  }

  /** The plugin versions (`pluginVersionKey`) this worker says it has: those with every handler's entry file here, when last looked. */
  builtPlugins(): string[] {
    return this.#registry
      .list()
      .map((plugin) => pluginVersionKey(plugin.id, plugin.manifest.version))
      .filter((key) => !this.#plugins.has(key));
  }

  /** Whether the handler's entry file of this version of the plugin was missing here, when last looked. */
  missing(pluginId: string, version: string, handlerId: string): boolean {
    return this.#handlers.has(`${pluginVersionKey(pluginId, version)}#${handlerId}`);
  }

  async #look(): Promise<void> {
    const handlers = new Set<string>();
    const plugins = new Set<string>();
    const looks = this.#registry.list().flatMap((plugin) =>
      Object.entries(plugin.manifest.handlers).map(async ([handlerId, spec]) => {
        if (await exists(path.resolve(plugin.root, spec.entry))) return;
        const key = pluginVersionKey(plugin.id, plugin.manifest.version);
        handlers.add(`${key}#${handlerId}`);
        plugins.add(key);
      }),
    );
    await Promise.all(looks);
    this.#handlers = handlers;
    this.#plugins = plugins;
  }
}

function exists(file: string): Promise<boolean> {
  return access(file).then(
    () => true,
    () => false,
  );
}

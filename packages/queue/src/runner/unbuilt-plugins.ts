import type { PluginRegistry } from '@kb-labs/plugin-execution-core';
import { missingFilesOf } from '@kb-labs/plugin-execution-core/backend-kit';
import { pluginVersionKey } from './peer-plugins.js';

/**
 * This worker's plugins that are not built here: their manifest is, none of their handlers' entry
 * files (a build or install not run on this machine). A task of such a plugin is handed back to
 * the workers that have it built (worker-execution.ts), as one of a plugin this worker lacks is,
 * and the plugin is left out of this worker's presence, so that its peers and the hosts do not
 * count on it here. One missing entry among others is left to that handler's executions to report
 * (HANDLER_NOT_FOUND), as a local backend's health() leaves it: every worker would lack it alike.
 * Looked for when the worker starts and at each presence (every `heartbeatMs`), not at each task:
 * a plugin built under a running worker is taken at its next.
 */
export class UnbuiltPlugins {
  readonly #registry: PluginRegistry;
  /** `pluginVersionKey` of each plugin none of whose entries was there, when last looked. */
  #unbuilt = new Set<string>();
  #looking: Promise<void> | undefined;

  constructor(registry: PluginRegistry) {
    this.#registry = registry;
  }

  /** Look at the entry files again (one look at a time). */
  refresh(): Promise<void> {
    return (this.#looking ??= this.#look().finally(() => (this.#looking = undefined)));
  }

  /** The plugin versions (`pluginVersionKey`) this worker says it has: those built here, when last looked. */
  builtPlugins(): string[] {
    return this.#registry
      .list()
      .map((plugin) => pluginVersionKey(plugin.id, plugin.manifest.version))
      .filter((key) => !this.#unbuilt.has(key));
  }

  /** Whether this version of the plugin was not built here, when last looked. */
  unbuilt(pluginId: string, version: string): boolean {
    return this.#unbuilt.has(pluginVersionKey(pluginId, version));
  }

  async #look(): Promise<void> {
    const unbuilt = new Set<string>();
    // As health() judges it: its folder gone, or none of its entries there.
    const looks = this.#registry.list().map(async (plugin) => {
      if ((await missingFilesOf(plugin)) !== undefined) unbuilt.add(pluginVersionKey(plugin.id, plugin.manifest.version));
    });
    await Promise.all(looks);
    this.#unbuilt = unbuilt;
  }
}

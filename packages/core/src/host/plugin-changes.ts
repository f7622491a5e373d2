import { ShuttingDownError } from '../errors.js';
import { checkPluginIdArgument } from './plugin-id-argument.js';
import type { PluginRegistry, PluginSource, RegisteredPlugin } from './plugin-registry.js';
import type { PluginWatcher } from './plugin-watcher.js';

/** What changing a running backend's plugins needs of it. */
export interface PluginChangesHost {
  readonly type: string;
  readonly registry: PluginRegistry;
  readonly watcher: PluginWatcher | undefined;
  /** Settles once the `plugins` option is loaded; undefined when it is. */
  ensureReady(): Promise<void> | undefined;
  /** The backend's state once its shutdown has begun ('shutting-down', 'closed'); undefined before. */
  shutDown(): string | undefined;
}

/**
 * A BaseBackend's registerPlugin, reloadPlugin and unregisterPlugin: each waits for the `plugins`
 * option to be loaded (which would otherwise undo it), an unregister also for the registrations
 * called before it (calls take effect in the order made), and each is refused once shutdown began.
 */
export class PluginChanges {
  readonly #host: PluginChangesHost;
  /** registerPlugin() calls not settled yet. */
  readonly #registrations = new Set<Promise<unknown>>();

  constructor(host: PluginChangesHost) {
    this.#host = host;
  }

  register(source: PluginSource): Promise<RegisteredPlugin> {
    const registration = this.#register(source);
    const settled: Promise<unknown> = registration.then(
      () => this.#registrations.delete(settled),
      () => this.#registrations.delete(settled),
    );
    this.#registrations.add(settled);
    return registration;
  }

  async reload(pluginId: string): Promise<RegisteredPlugin> {
    await this.#pluginsLoaded(pluginId, 'reload');
    return this.#host.registry.reload(pluginId);
  }

  async unregister(pluginId: string): Promise<boolean> {
    const registering = [...this.#registrations];
    await this.#pluginsLoaded(pluginId, 'unregister');
    await Promise.all(registering);
    return this.#host.registry.unregister(pluginId);
  }

  async #register(source: PluginSource): Promise<RegisteredPlugin> {
    const { registry, watcher } = this.#host;
    this.#refuseOnceShutDown('register a plugin');
    // From the call on: an execute() of the plugin meanwhile is told to await this.
    const registered = registry.loading();
    try {
      await this.#host.ensureReady();
      this.#refuseOnceShutDown('register a plugin');
      const plugin = typeof source === 'string' || source instanceof URL ? await registry.load(source) : registry.register(source);
      await watcher?.watch(plugin);
      return plugin;
    } finally {
      registered();
    }
  }

  async #pluginsLoaded(pluginId: string, action: 'reload' | 'unregister'): Promise<void> {
    checkPluginIdArgument(pluginId, action);
    this.#refuseOnceShutDown(`${action} plugin "${pluginId}"`);
    await this.#host.ensureReady();
    this.#refuseOnceShutDown(`${action} plugin "${pluginId}"`);
  }

  /** SHUTTING_DOWN, naming what was asked and the backend, once its shutdown has begun. */
  #refuseOnceShutDown(what: string): void {
    const state = this.#host.shutDown();
    if (state) throw new ShuttingDownError(`Cannot ${what}: the ${this.#host.type} backend is ${state === 'closed' ? 'shut down' : 'shutting down'}`);
  }
}

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
 * A BaseBackend's registerPlugin, reloadPlugin and unregisterPlugin. They take effect in the order
 * called: each waits for the changes called before it to settle (`unregisterPlugin(id)` then
 * `registerPlugin(folder)`, not awaited in between, unregisters first), and for the `plugins`
 * option to be loaded (which would otherwise undo it); each is refused once shutdown began.
 */
export class PluginChanges {
  readonly #host: PluginChangesHost;
  /** The last change called, settled either way: the next one begins after it. */
  #last: Promise<unknown> = Promise.resolve();

  constructor(host: PluginChangesHost) {
    this.#host = host;
  }

  register(source: PluginSource): Promise<RegisteredPlugin> {
    const refused = this.#refusedAtTheCall('register');
    if (refused) return refused;
    // From the call on: an execute() of the plugin meanwhile is told to await this.
    const registered = this.#host.registry.loading();
    const registration = this.#inTurn(() => this.#register(source));
    registration.then(registered, registered);
    return registration;
  }

  reload(pluginId: string): Promise<RegisteredPlugin> {
    const refused = this.#refusedAtTheCall('reload', pluginId);
    if (refused) return refused;
    return this.#inTurn(async () => {
      await this.#pluginsLoaded(`reload plugin "${pluginId}"`);
      return this.#host.registry.reload(pluginId);
    });
  }

  unregister(pluginId: string): Promise<boolean> {
    const refused = this.#refusedAtTheCall('unregister', pluginId);
    if (refused) return refused;
    // From the call on, executions of the plugin get HANDLER_NOT_FOUND, whatever it waits for.
    const unregistered = this.#host.registry.unregistering(pluginId);
    const removal = this.#inTurn(async () => {
      await this.#pluginsLoaded(`unregister plugin "${pluginId}"`);
      return this.#host.registry.unregister(pluginId);
    });
    removal.then(unregistered, unregistered);
    return removal;
  }

  /** A call refused before it waits for anything: a bad plugin id, or shutdown begun. */
  #refusedAtTheCall(action: 'register' | 'reload' | 'unregister', pluginId?: string): Promise<never> | undefined {
    try {
      if (action !== 'register') checkPluginIdArgument(pluginId, action);
      this.#refuseOnceShutDown(action === 'register' ? 'register a plugin' : `${action} plugin "${pluginId}"`);
      return undefined;
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** Run `change` once every change called before it has settled. */
  #inTurn<T>(change: () => Promise<T>): Promise<T> {
    const turn = this.#last.then(change);
    this.#last = turn.then(noop, noop);
    return turn;
  }

  async #register(source: PluginSource): Promise<RegisteredPlugin> {
    const { registry, watcher } = this.#host;
    await this.#pluginsLoaded('register a plugin');
    const plugin = typeof source === 'string' || source instanceof URL ? await registry.load(source) : registry.register(source);
    await watcher?.watch(plugin);
    return plugin;
  }

  /** Once the `plugins` option is loaded, unless shutdown began before or meanwhile: SHUTTING_DOWN naming `what` was asked. */
  async #pluginsLoaded(what: string): Promise<void> {
    this.#refuseOnceShutDown(what);
    await this.#host.ensureReady();
    this.#refuseOnceShutDown(what);
  }

  /** SHUTTING_DOWN, naming what was asked and the backend, once its shutdown has begun. */
  #refuseOnceShutDown(what: string): void {
    const state = this.#host.shutDown();
    if (state) throw new ShuttingDownError(`Cannot ${what}: the ${this.#host.type} backend is ${state === 'closed' ? 'shut down' : 'shutting down'}`);
  }
}

function noop(): void {}

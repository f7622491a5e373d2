import path from 'node:path';
import { HandlerNotFoundError, ValidationError, isExecutionError, type KnownExecutionError } from '../errors.js';
import { parseManifest, readFolder, readManifest } from './manifest-file.js';
import type { PluginManifest } from './manifest.js';
import { mergePermissions, type PermissionSpec } from './permissions.js';
import { shownControls } from '../shown-controls.js';
import { validationError } from '../validation.js';
import { checkedSource, isFolder, sourceRoot, type PluginSource } from './plugin-source.js';
import { settledInGroups } from './settled-in-groups.js';
import { listedNames } from './listed-names.js';
import { hostPluginLoads } from '../plugin-loads.js';
import { monotonicNow, setImmediate } from '../real-timers.js';
// Node's built-ins by getBuiltinModule, taken when this module loads: an ES import of a built-in
// also builds its ES facade, which every host would pay for at start-up (docs/benchmarks.md, Start-up).
const { isDeepStrictEqual } = process.getBuiltinModule('node:util');

/** Longest the registration of many plugins at once (a backend's `plugins`) holds the event loop before it gives it a turn. */
const REGISTRATION_TURN_MS = 10;

/** What a host that registered nothing is told, with what to do about it. */
const NONE_REGISTERED = " (no plugins are registered: give the backend the plugins' folders in its `plugins` option, or call registerPlugin()";
/** Said too when the runners are on other machines (a queue backend's host): the host needs the plugins as well. */
const NONE_REGISTERED_REMOTE = '; a queue backend\'s host needs them as its workers do';
/** Where a HANDLER_NOT_FOUND's message says the registered plugins it leaves out are. */
const AVAILABLE_PLUGINS = 'its details.availablePlugins names every one';

export type { PluginSource };

export interface RegisteredPlugin {
  readonly id: string;
  readonly root: string;
  readonly manifest: PluginManifest;
  /** 0 when registered, one more at each `reloadPlugin()`: which copy of its code new executions load. */
  readonly generation: number;
  /** Which load of its code this is, unique in the process (ResolvedHandler.moduleKey): it only grows, across reloads and registrations again after unregistering. */
  readonly moduleKey: number;
}

/**
 * Where the next ResolvedHandler.moduleKey is counted: for the process (every copy of core in it),
 * not per plugin or registry, so two registries (two backends) or two ids given the same folder
 * never share a load of old code.
 */
const pluginLoads = hostPluginLoads();

/** Told of each reload of a plugin of the registry (`PluginRegistry.onReload`), or of each plugin unregistered (`onUnregister`). */
export type PluginReloadListener = (plugin: RegisteredPlugin) => void;

/** Everything a backend needs to run one handler; computed once per handler and cached. */
export interface ResolvedHandler {
  readonly pluginId: string;
  readonly handlerId: string;
  readonly pluginRoot: string;
  /** Absolute path of the handler's module. */
  readonly entryPath: string;
  readonly exportName: string;
  readonly timeoutMs: number | undefined;
  readonly memoryMb: number | undefined;
  /** The plugin's generation this handler belongs to (see RegisteredPlugin.generation). */
  readonly generation: number;
  /**
   * Which load of the plugin's code this is, unique in the process (each registration and each
   * reload, of any plugin in any registry): what a runner imports the module under.
   */
  readonly moduleKey: number;
  /** Plugin-level permissions with the handler's merged over them: what the handler needs. */
  readonly permissions: PermissionSpec;
  readonly plugin: RegisteredPlugin;
}

/** A plugin source that could not be registered, and the id its manifest claimed when it got that far. */
export interface PluginLoadFailure {
  /** `plugins[<index>]` of the backend's options. */
  readonly source: string;
  readonly pluginId: string | undefined;
  readonly error: KnownExecutionError;
  /** The folder it names (resolved), when it names a usable one: a plugin registered from there later clears this failure. */
  readonly root?: string;
}

/**
 * Knows the plugins a backend may run and resolves `pluginId` + `handlerId` to a module.
 * Lookups use Maps, so ids such as `toString` or `__proto__` resolve to nothing, not to Object.prototype.
 */
export class PluginRegistry {
  readonly #plugins = new Map<string, RegisteredPlugin>();
  readonly #handlers = new Map<string, Map<string, ResolvedHandler>>();
  #failures: readonly PluginLoadFailure[] = [];
  /** Folders load() is reading now (a registerPlugin() not awaited yet, say). */
  #loading = 0;
  /** The manifest file of each plugin registered from its folder (a reload reads it again). */
  readonly #manifestFiles = new Map<string, string>();
  readonly #reloadListeners = new Set<PluginReloadListener>();
  readonly #unregisterListeners = new Set<PluginReloadListener>();
  /** Plugins an unregisterPlugin() was called for and has not removed yet, with how many such calls. */
  readonly #unregistering = new Map<string, number>();
  /** Each plugin's reload under way, settled: the next one waits for it. */
  readonly #reloads = new Map<string, Promise<void>>();

  /** Read and validate `<dir>/kb.plugin.json`, then register it (`dir`: a path or a `file:` URL). */
  async load(dir: string | URL): Promise<RegisteredPlugin> {
    const loaded = this.loading();
    try {
      const { source, file } = await readFolder(dir);
      return this.register(source, file);
    } finally {
      loaded();
    }
  }

  /** A registration has begun (a backend's registerPlugin(), before it waits for anything): call what it returns once it is over. */
  loading(): () => void {
    this.#loading++;
    return () => void this.#loading--;
  }

  /** An unregister of `pluginId` has been called (it waits for changes called before it): it resolves as unregistered from now on. Call what it returns once it is over. */
  unregistering(pluginId: string): () => void {
    const calls = this.#unregistering;
    calls.set(pluginId, (calls.get(pluginId) ?? 0) + 1);
    return () => void (calls.get(pluginId) === 1 ? calls.delete(pluginId) : calls.set(pluginId, calls.get(pluginId)! - 1));
  }

  /**
   * Validate a manifest and register it under its id; a second plugin with the same id from
   * another folder is refused. The same folder again: the same manifest changes nothing, another
   * one is installed as the plugin's next generation, as a reload would (a plugin given as
   * `{ root, manifest }` has no file to read a changed manifest from).
   */
  register(given: { root: string; manifest: unknown }, file?: string): RegisteredPlugin {
    const source = checkedSource(given);
    const root = path.resolve(source.root);
    const manifest = parseManifest(root, source.manifest, file);
    const existing = this.#plugins.get(manifest.id);
    if (existing) {
      if (existing.root === root) return isDeepStrictEqual(existing.manifest, manifest) ? existing : this.#replace(existing, manifest, file);
      throw new ValidationError(`Plugin "${manifest.id}" is already registered from ${existing.root}; refusing a second copy from ${root}`, {
        details: { pluginId: manifest.id, root, existingRoot: existing.root },
      });
    }
    if (file) this.#manifestFiles.set(manifest.id, file);
    this.#forgetFailures((f) => f.root === root || f.pluginId === manifest.id);
    return this.#install(root, manifest, 0);
  }

  /** Failures of sources that now load (fixed, then registered with registerPlugin()), or whose plugin was unregistered: no longer a problem of the backend. */
  #forgetFailures(resolved: (failure: PluginLoadFailure) => boolean): void {
    if (this.#failures.some(resolved)) this.#failures = this.#failures.filter((f) => !resolved(f));
  }

  /**
   * Register the plugin's next generation: its manifest read again from its folder (one
   * registered as `{ root, manifest }` keeps the manifest it was given: only its code is loaded
   * anew). New executions resolve to it; the old one stays registered, and serving, if the new
   * manifest is invalid (ValidationError) or claims another id. HandlerNotFoundError for an id
   * that is not registered. Listeners of `onReload` hear of it before this resolves. Reloads of
   * one plugin run in the order called, each reading the file after the one before installed.
   */
  async reload(pluginId: string): Promise<RegisteredPlugin> {
    this.#registered(pluginId, 'reload');
    // One plugin's reloads run one after another: each reads the file after the one before it
    // installed, so the last called installs the manifest read last (never an older read over it).
    const reloaded = (this.#reloads.get(pluginId) ?? Promise.resolve()).then(() => this.#reloadNow(pluginId));
    const settled = reloaded.then(
      () => undefined,
      () => undefined,
    );
    this.#reloads.set(pluginId, settled);
    void settled.then(() => this.#reloads.get(pluginId) === settled && this.#reloads.delete(pluginId));
    return reloaded;
  }

  async #reloadNow(pluginId: string): Promise<RegisteredPlugin> {
    const current = this.#registered(pluginId, 'reload');
    const file = this.#manifestFiles.get(pluginId);
    const manifest = file ? parseManifest(current.root, await readManifest(current.root, file), file) : current.manifest;
    if (manifest.id !== pluginId) {
      throw new ValidationError(`Cannot reload plugin "${pluginId}": ${file} now says its id is "${manifest.id}" (register it as a new plugin instead)`, {
        details: { pluginId, file: file ?? null, root: current.root, issues: [{ path: 'id', message: `changed from "${pluginId}" to "${manifest.id}"` }] },
      });
    }
    // Read while another reload, or an unregister, may have run: install over what is there now,
    // unless that is another registration (unregistered and registered again meanwhile, from
    // elsewhere or with a manifest of its own): its code is loaded afresh already, and what was
    // read is not its manifest.
    const now = this.#registered(pluginId, 'reload');
    if (now.root !== current.root || this.#manifestFiles.get(pluginId) !== file) return now;
    // Registered again from its folder meanwhile (unregistered then loaded, or loaded again with
    // a changed manifest): that read may have come after this one, whose manifest may be older.
    // Read once more, after it, so that what is installed last was read last.
    if (now !== current) return this.#reloadNow(pluginId);
    return this.#nextGeneration(now, file ? manifest : now.manifest);
  }

  /** The same folder registered again with another manifest: from now on that one, and a reload reads `file` (or keeps it, if it came without one). */
  #replace(existing: RegisteredPlugin, manifest: PluginManifest, file: string | undefined): RegisteredPlugin {
    if (file) this.#manifestFiles.set(manifest.id, file);
    else this.#manifestFiles.delete(manifest.id);
    return this.#nextGeneration(existing, manifest);
  }

  /** Install `manifest` as the next generation of `current` and tell the reload listeners (backends retire runners with the old code). */
  #nextGeneration(current: RegisteredPlugin, manifest: PluginManifest): RegisteredPlugin {
    const plugin = this.#install(current.root, manifest, current.generation + 1);
    tell(this.#reloadListeners, plugin);
    return plugin;
  }

  /** Be told of every reload of a plugin of this registry (a backend retires runners with old code). Returns a function that removes the listener. */
  onReload(listener: PluginReloadListener): () => void {
    this.#reloadListeners.add(listener);
    return () => this.#reloadListeners.delete(listener);
  }

  /** Be told of every plugin unregistered from this registry (a backend stops watching it and retires runners that hold its code). Returns a function that removes the listener. */
  onUnregister(listener: PluginReloadListener): () => void {
    this.#unregisterListeners.add(listener);
    return () => this.#unregisterListeners.delete(listener);
  }

  #registered(pluginId: string, action: string): RegisteredPlugin {
    const plugin = typeof pluginId === 'string' ? this.#plugins.get(pluginId) : undefined;
    if (plugin) return plugin;
    const known = [...this.#plugins.keys()];
    throw new HandlerNotFoundError(
      `Cannot ${action} plugin ${JSON.stringify(pluginId)}: it is not registered${known.length ? ` (registered: ${listedNames(known, AVAILABLE_PLUGINS)})` : ' (no plugins are registered)'}`,
      { details: { pluginId: String(pluginId), availablePlugins: known } },
    );
  }

  /** Make `manifest` the plugin's registered version: its handlers resolved once, both maps swapped together. */
  #install(root: string, manifest: PluginManifest, generation: number): RegisteredPlugin {
    const moduleKey = pluginLoads.next++;
    const plugin: RegisteredPlugin = Object.freeze({ id: manifest.id, root, manifest, generation, moduleKey });
    const handlers = new Map<string, ResolvedHandler>();
    for (const [handlerId, spec] of Object.entries(manifest.handlers)) {
      handlers.set(
        handlerId,
        Object.freeze({
          pluginId: manifest.id,
          handlerId,
          pluginRoot: root,
          entryPath: path.resolve(root, spec.entry),
          exportName: spec.export,
          timeoutMs: spec.timeoutMs,
          memoryMb: spec.memoryMb,
          generation,
          moduleKey,
          permissions: mergePermissions(manifest.permissions, spec.permissions),
          plugin,
        }),
      );
    }
    this.#plugins.set(manifest.id, plugin);
    this.#handlers.set(manifest.id, handlers);
    return plugin;
  }

  /** Load or register each source; all problems are reported together. */
  async addAll(sources: readonly PluginSource[]): Promise<RegisteredPlugin[]> {
    const results = await this.#registerInOrder(sources);
    const failures = results.flatMap((r, i) => (r.ok ? [] : [{ index: i, error: r.error as Error }]));
    if (failures.length === 1) throw failures[0]!.error;
    if (failures.length > 1) {
      throw validationError(
        `${failures.length} plugins could not be registered`,
        failures.map((f) => ({ path: `plugins[${f.index}]`, message: f.error.message })),
      );
    }
    return results.map((r) => (r as { plugin: RegisteredPlugin }).plugin);
  }

  /**
   * Load or register each source on its own: the good ones are registered whatever happens to
   * the others, and the failures are kept (resolve() names them, `failures` lists them).
   * `indices`: where each source is in the backend's `plugins` option (what a failure's `source`
   * names), when these are some of them read again; by default their positions here.
   */
  async addEach(sources: readonly PluginSource[], indices?: readonly number[]): Promise<readonly PluginLoadFailure[]> {
    const results = await this.#registerInOrder(sources, indices);
    const failures = results.flatMap((r, i): PluginLoadFailure[] => {
      if (r.ok) return [];
      const error = isExecutionError(r.error) ? r.error : new ValidationError(String(r.error), { cause: r.error });
      const pluginId = (error.details as { pluginId?: unknown } | undefined)?.pluginId;
      const root = sourceRoot(sources[i]!);
      return [{ source: `plugins[${indices?.[i] ?? i}]`, pluginId: typeof pluginId === 'string' ? pluginId : undefined, error, ...(root ? { root } : {}) }];
    });
    // Added to those of earlier calls (another backend sharing this registry loads its own list): a
    // folder that fails again replaces its earlier failure.
    const again = new Set(failures.flatMap((f) => (f.root ? [f.root] : [])));
    this.#failures = [...this.#failures.filter((f) => !f.root || !again.has(f.root)), ...failures];
    return failures;
  }

  /** Folders read side by side (a group at a time), then everything registered in the order given: of two copies of one plugin, the first listed wins. */
  async #registerInOrder(sources: readonly PluginSource[], indices?: readonly number[]): Promise<Array<{ ok: true; plugin: RegisteredPlugin } | { ok: false; error: unknown }>> {
    // A group of folders at a time: 5,000 read at once held the host's loop ~300 ms as their reads finished together.
    const read = await settledInGroups(sources, 64, (source, i): Promise<ReadSource> | ReadSource => (isFolder(source) ? readFolder(source, `plugins[${indices?.[i] ?? i}]`) : { source, file: undefined }));
    const results: Array<{ ok: true; plugin: RegisteredPlugin } | { ok: false; error: unknown }> = [];
    let turnStarted = monotonicNow();
    for (const r of read) {
      // Each registration validates a manifest and looks at its entries on disk: 5,000 plugins in
      // one turn held the event loop for most of a second. The host's own work gets turns between.
      if (monotonicNow() - turnStarted > REGISTRATION_TURN_MS) {
        await new Promise((resume) => setImmediate(resume));
        turnStarted = monotonicNow();
      }
      try {
        if (r.status === 'rejected') throw r.reason;
        results.push({ ok: true, plugin: this.register(r.value.source, r.value.file) });
      } catch (error) {
        results.push({ ok: false, error });
      }
    }
    return results;
  }

  /** The sources given to addEach() that could not be registered, and have not been since. */
  get failures(): readonly PluginLoadFailure[] {
    return this.#failures;
  }

  /**
   * Remove a plugin: from now on its id resolves to nothing (HANDLER_NOT_FOUND), and it may be
   * registered again from any folder, as a new plugin (generation 0, its code loaded afresh). A
   * failure to load a source that claimed the id is forgotten too. Listeners of `onUnregister`
   * hear of it before this returns. Whether a plugin was registered under the id.
   */
  unregister(pluginId: string): boolean {
    this.#forgetFailures((f) => f.pluginId === pluginId);
    const plugin = this.#plugins.get(pluginId);
    if (!plugin) return false;
    this.#plugins.delete(pluginId);
    this.#handlers.delete(pluginId);
    this.#manifestFiles.delete(pluginId);
    tell(this.#unregisterListeners, plugin);
    return true;
  }

  get(pluginId: string): RegisteredPlugin | undefined {
    return this.#plugins.get(pluginId);
  }

  list(): RegisteredPlugin[] {
    return [...this.#plugins.values()];
  }

  /** Resolve or throw HandlerNotFoundError naming what was asked and what exists (and, `remoteRunners`, that a queue host needs the plugins too). */
  resolve(pluginId: string, handlerId: string, remoteRunners = false): ResolvedHandler {
    if (this.#unregistering.size > 0 && this.#unregistering.has(pluginId)) {
      throw new HandlerNotFoundError(`Plugin "${shownControls(pluginId, '')}" is not registered: an unregisterPlugin() of it is under way`, {
        details: { pluginId, handlerId, availablePlugins: [...this.#plugins.keys()].filter((id) => !this.#unregistering.has(id)) },
      });
    }
    const handlers = this.#handlers.get(pluginId);
    if (!handlers) {
      // Its folder was given but failed to load: that failure is the answer.
      const failed = this.#failures.find((f) => f.pluginId === pluginId);
      if (failed) throw failed.error;
      const known = [...this.#plugins.keys()];
      const failures = this.#failures;
      const more = failures.length > 3 ? `; and ${failures.length - 3} more (health() names every one)` : '';
      const unloaded = failures.length ? `; ${failures.length} plugin source(s) failed to load: ${failures.slice(0, 3).map((f) => `${f.source}: ${f.error.message}`).join('; ')}${more}` : '';
      // A registerPlugin() not awaited: its folder is still being read.
      const loading = this.#loading ? '; a plugin is still being registered (a registerPlugin() not awaited yet): await it before execute()' : '';
      const none = loading || unloaded ? ' (none is yet)' : `${NONE_REGISTERED}${remoteRunners ? NONE_REGISTERED_REMOTE : ''})`;
      throw new HandlerNotFoundError(
        `Plugin "${shownControls(pluginId, '')}" is not registered${known.length ? ` (registered: ${listedNames(known, AVAILABLE_PLUGINS)})` : none}${loading}${unloaded}`,
        { details: { pluginId, handlerId, availablePlugins: known } },
      );
    }
    const handler = handlers.get(handlerId);
    if (!handler) {
      const known = [...handlers.keys()];
      // Another folder claiming the id was refused: the handler may be that copy's.
      const copy = this.#failures.find((f) => f.pluginId === pluginId);
      const refused = copy ? `; another copy of the plugin was refused (${copy.source}: ${copy.error.message})` : '';
      // The caller's ids as they are, but for control characters (a log read in a terminal).
      throw new HandlerNotFoundError(`Plugin "${pluginId}" has no handler "${shownControls(handlerId, '')}" (handlers: ${known.join(', ')})${refused}`, {
        details: { pluginId, handlerId, availableHandlers: known },
      });
    }
    return handler;
  }
}

/** Tell each listener of a change to `plugin`; one that throws (a backend's clean-up of its runners) undoes nothing. */
function tell(listeners: ReadonlySet<PluginReloadListener>, plugin: RegisteredPlugin): void {
  for (const listener of listeners) {
    try {
      listener(plugin);
    } catch {
      // The change is made: a listener's failure is its own.
    }
  }
}

/** A source as read: a folder's manifest, with the file it came from. */
type ReadSource = { source: { root: string; manifest: unknown }; file: string | undefined };

import type { FSWatcher } from 'node:fs';
import path from 'node:path';
import { ValidationError, isExecutionError, type KnownExecutionError } from '../errors.js';
import type { RegisteredPlugin } from './plugin-registry.js';
import { declaredWriteFolders } from './manifest.js';
import { thrownText } from '../wire-value.js';
import { clearInterval, clearTimeout, setInterval, setTimeout } from '../real-timers.js';
import { whenRejected } from './when-rejected.js';
// Node's built-ins by getBuiltinModule, taken when this module loads: an ES import of a built-in
// also builds its ES facade, which every host would pay for at start-up (docs/benchmarks.md, Start-up).
// node:fs/promises on first use (`fs.promises`): Node loads it on demand, ~5 ms, and importing core should not.
const fs = process.getBuiltinModule('node:fs');

/** The `watch` option's object form. */
export interface WatchOptions {
  /** Quiet time after the last change in a plugin's folder before the plugin is reloaded. @default 100 */
  debounceMs?: number | undefined;
  /**
   * Told the outcome of every reload the watcher makes, for the host to log. A failed reload
   * leaves the previous version serving. @default none: a failure is reported by `health()`
   * and as a process warning (`process.emitWarning`, code `KB_PLUGIN_RELOAD_FAILED`; the same
   * failure again, at a later save, is not warned of again). Not
   * awaited; what it throws, or the rejection of the promise it returns, is a process warning
   * (code `KB_PLUGIN_RELOAD_CALLBACK`).
   */
  onReload?: ((event: PluginReloadEvent) => void) | undefined;
}

/** One reload made by the watcher: what changed (relative to the plugin folder), and the outcome. */
export type PluginReloadEvent =
  | { ok: true; pluginId: string; changed: string[]; plugin: RegisteredPlugin }
  | { ok: false; pluginId: string; changed: string[]; error: KnownExecutionError };

const DEFAULT_DEBOUNCE_MS = 100;

/** One watched plugin: a watcher per folder of it (node_modules and dot-folders left out). */
interface WatchedPlugin {
  readonly id: string;
  readonly root: string;
  readonly folders: Map<string, FSWatcher>;
  /** Paths changed since the last reload began. */
  readonly changed: Set<string>;
  timer: NodeJS.Timeout | undefined;
  reloading: boolean;
  /** A change came while a reload ran: reload once more after it. */
  again: boolean;
  /** Why the last reload failed, until one succeeds. */
  failure: string | undefined;
  /** Why its folder cannot be watched, until it is. */
  unwatchable: string | undefined;
  /** Its folder is gone: looked for every ROOT_POLL_MS until it is back. */
  awaiting: NodeJS.Timeout | undefined;
  /** Its folder itself was deleted or moved: the watchers may be on a folder that is gone. */
  rootReplaced: boolean;
  /** The watchers of the folders above it, each for the name of the next one down: they see a folder on its path replaced (a symlink's removal is not seen through the link). */
  pathWatchers: FSWatcher[];
  /** The folders its manifest says its handlers write (`permissions.fs.write`): their changes are its own work, not a new version. */
  writes: string[];
  /** Unregistered: no longer watched, and nothing under way for it goes on. */
  removed: boolean;
}

/** How often a deleted plugin folder is looked for (a `git checkout`, or a build that empties it). */
const ROOT_POLL_MS = 250;

/**
 * The `watch` option (development): reloads a plugin when files in its folder change, debounced.
 * One `fs.watch` per folder, not `recursive: true`: on Linux Node builds that one from a watcher
 * per file and folder of the whole tree, node_modules included; here a plugin's node_modules and
 * dot-folders (`.git`, editor folders) are never watched. The watchers do not keep the
 * process alive; `close()` (at shutdown) ends them and any pending reload.
 */
export class PluginWatcher {
  readonly #reload: (pluginId: string) => Promise<RegisteredPlugin>;
  readonly #debounceMs: number;
  readonly #onReload: ((event: PluginReloadEvent) => void) | undefined;
  readonly #plugins = new Map<string, WatchedPlugin>();
  #closed = false;

  constructor(options: WatchOptions, reload: (pluginId: string) => Promise<RegisteredPlugin>) {
    this.#reload = reload;
    this.#debounceMs = options.debounceMs ?? DEFAULT_DEBOUNCE_MS;
    this.#onReload = options.onReload;
  }

  /** Start watching each plugin's folder; resolves once every folder of them is watched. */
  async watchAll(plugins: readonly RegisteredPlugin[]): Promise<void> {
    await Promise.all(plugins.map((plugin) => this.watch(plugin)));
  }

  /** Start watching one plugin's folder (once per plugin id; watched already, registered again: the folders its manifest now writes). */
  async watch(plugin: RegisteredPlugin): Promise<void> {
    const known = this.#plugins.get(plugin.id);
    if (known?.root === plugin.root && !this.#closed) await this.#followWrites(known, writeFolders(plugin));
    if (this.#closed || known) return;
    const watched: WatchedPlugin = {
      id: plugin.id,
      root: plugin.root,
      folders: new Map(),
      changed: new Set(),
      timer: undefined,
      reloading: false,
      again: false,
      failure: undefined,
      unwatchable: undefined,
      awaiting: undefined,
      rootReplaced: false,
      pathWatchers: [],
      writes: writeFolders(plugin),
      removed: false,
    };
    this.#plugins.set(plugin.id, watched);
    this.#watchPath(watched);
    await this.#watchTree(watched, plugin.root);
  }

  /**
   * Watch the folder that holds the plugin's for its name: the folder deleted and made again, or
   * a symlink to it made, removed or pointed elsewhere. The watchers of the folder itself follow
   * a symlink to its target and see none of that (the target is untouched). The folders above
   * are watched for their names made, deleted or moved (not for their contents): a folder on the
   * way replaced (`mv app app.old && mv app.new app`, a `current` link above it switched) leaves
   * the watchers on the old tree.
   */
  #watchPath(plugin: WatchedPlugin): void {
    // Watched afresh when the plugin folder is: those folders may have been made again too
    // (a branch without them, then back), and the old watchers are on the folders that were deleted.
    for (const watcher of plugin.pathWatchers) watcher.close();
    plugin.pathWatchers = [];
    if (this.#done(plugin)) return;
    for (let child = plugin.root; path.dirname(child) !== child; child = path.dirname(child)) {
      const name = path.basename(child);
      const holdsRoot = child === plugin.root;
      try {
        const watcher = fs.watch(path.dirname(child), { persistent: false }, (event, changed) => {
          // Above the plugin's folder, only a name made, deleted or moved: a 'change' there is the folder's metadata (a sub-folder made in it).
          if (changed === null || changed.toString() !== name || (!holdsRoot && event !== 'rename')) return;
          plugin.rootReplaced = true;
          this.#changed(plugin, plugin.root, 'change', null);
        });
        watcher.on('error', () => watcher.close());
        plugin.pathWatchers.push(watcher);
      } catch {
        // A folder above that cannot be watched (no read permission): a replaced root is found as before, when it is gone.
      }
    }
  }

  /** Why reloads made by the watcher failed (for `health().problems`). */
  problems(): string[] {
    const problems: string[] = [];
    for (const plugin of this.#plugins.values()) {
      if (plugin.unwatchable) problems.push(`plugin "${plugin.id}" is not watched: its folder cannot be watched: ${plugin.unwatchable}`);
      if (plugin.failure) problems.push(`plugin "${plugin.id}" was not reloaded after a change in ${plugin.root} (its previous version stays registered): ${plugin.failure}`);
    }
    return problems;
  }

  /** Stop watching; a pending reload is dropped. */
  close(): void {
    this.#closed = true;
    for (const plugin of this.#plugins.values()) stopWatching(plugin);
  }

  /** Stop watching one plugin (it was unregistered): its watchers, its pending reload and the look-out for its folder go. */
  unwatch(pluginId: string): void {
    const plugin = this.#plugins.get(pluginId);
    if (!plugin) return;
    this.#plugins.delete(pluginId);
    plugin.removed = true;
    stopWatching(plugin);
  }

  #done(plugin: WatchedPlugin): boolean {
    return this.#closed || plugin.removed;
  }

  /** Watch `folder` and the folders under it (a folder that cannot be read is skipped). */
  async #watchTree(plugin: WatchedPlugin, folder: string): Promise<void> {
    if (this.#done(plugin) || plugin.folders.has(folder) || ignored(plugin, folder)) return;
    let watcher: FSWatcher;
    try {
      watcher = fs.watch(folder, { persistent: false }, (event, name) => this.#changed(plugin, folder, event, name));
    } catch (error) {
      if (folder !== plugin.root) return;
      plugin.unwatchable = (error as Error).message;
      // Not there (yet): looked for until it is, as a folder deleted is.
      if (!fs.existsSync(folder)) this.#awaitRoot(plugin);
      return;
    }
    // The folder was removed (or became unreadable): its watcher is done.
    watcher.on('error', () => {
      watcher.close();
      plugin.folders.delete(folder);
      if (folder === plugin.root) this.#awaitRoot(plugin);
    });
    plugin.folders.set(folder, watcher);
    if (folder === plugin.root) plugin.unwatchable = undefined;
    const entries = await fs.promises.readdir(folder, { withFileTypes: true }).catch(() => []);
    await Promise.all(entries.filter((entry) => entry.isDirectory()).map((entry) => this.#watchTree(plugin, path.join(folder, entry.name))));
  }

  #changed(plugin: WatchedPlugin, folder: string, event: string, name: string | Buffer | null): void {
    if (this.#done(plugin)) return;
    // A watched folder itself deleted or moved: its watcher reports the folder's own name, as it
    // does for an entry of that name made in it (`src/src`), which is there to be seen.
    const self = name !== null && name.toString() === path.basename(folder) && !fs.existsSync(path.join(folder, name.toString()));
    if (self && folder === plugin.root) plugin.rootReplaced = true;
    const file = name === null || self ? folder : path.join(folder, name.toString());
    if (ignored(plugin, file)) return;
    plugin.changed.add(path.relative(plugin.root, file) || '.');
    // An entry made, deleted or moved: a folder there now is watched afresh (one deleted and made
    // again, `rm -rf dist` then a build, is a new folder to the OS: the old watchers see nothing).
    if (event === 'rename' && !self) {
      void fs.promises.stat(file).then(
        (stat) => {
          this.#unwatchTree(plugin, file);
          return stat.isDirectory() ? this.#watchTree(plugin, file) : undefined;
        },
        () => this.#unwatchTree(plugin, file),
      );
    }
    clearTimeout(plugin.timer);
    plugin.timer = setTimeout(() => this.#reloadNow(plugin), this.#debounceMs).unref();
  }

  /** Close the watchers of `folder` and of every folder under it. */
  #unwatchTree(plugin: WatchedPlugin, folder: string): void {
    for (const [watched, watcher] of plugin.folders) {
      if (watched !== folder && !watched.startsWith(folder + path.sep)) continue;
      watcher.close();
      plugin.folders.delete(watched);
    }
  }

  async #reloadNow(plugin: WatchedPlugin): Promise<void> {
    plugin.timer = undefined;
    if (this.#done(plugin)) return;
    if (plugin.reloading) {
      plugin.again = true;
      return;
    }
    plugin.reloading = true;
    // Replaced (deleted and made again, a branch switch): the watchers are on the old folder.
    if (plugin.rootReplaced && fs.existsSync(plugin.root)) {
      plugin.rootReplaced = false;
      await this.#rewatch(plugin);
    }
    const changed = [...plugin.changed].sort();
    plugin.changed.clear();
    const failedBefore = plugin.failure;
    let event: PluginReloadEvent;
    try {
      event = { ok: true, pluginId: plugin.id, changed, plugin: await this.#reload(plugin.id) };
    } catch (thrown) {
      const error = isExecutionError(thrown) ? thrown : new ValidationError(String(thrown), { cause: thrown });
      event = { ok: false, pluginId: plugin.id, changed, error };
    }
    // Gone, even where the reload did not need it (a plugin registered as { root, manifest }): looked
    // for until it is back. The watchers of the folders above may be on folders gone with it.
    if (!fs.existsSync(plugin.root)) this.#awaitRoot(plugin);
    if (event.ok) await this.#followWrites(plugin, writeFolders(event.plugin));
    plugin.reloading = false;
    // Shut down or unregistered meanwhile: a reload that failed for that is no news, in problems() either.
    if (this.#done(plugin)) return;
    plugin.failure = event.ok ? undefined : event.error.message;
    // The same failure again (another save of a manifest still broken) was warned of already.
    this.#report(event, event.ok || event.error.message !== failedBefore);
    if (plugin.again) {
      plugin.again = false;
      void this.#reloadNow(plugin);
    }
  }

  /**
   * The write folders of the plugin's manifest as it is now (reloaded, or registered again): one it
   * no longer lets its handlers write holds code again and is watched from now on (it never was); one it now lets them write is not.
   */
  async #followWrites(plugin: WatchedPlugin, writes: string[]): Promise<void> {
    const freed = plugin.writes.filter((folder) => !writes.includes(folder));
    plugin.writes = writes;
    for (const folder of writes) this.#unwatchTree(plugin, folder);
    const folders = await Promise.all(freed.map((folder) => fs.promises.stat(folder).then((stat) => stat.isDirectory(), () => false)));
    await Promise.all(freed.filter((_, i) => folders[i]).map((folder) => this.#watchTree(plugin, folder)));
  }

  /**
   * The plugin's folder is gone (its watchers with it): look for it until it is back, then watch
   * it afresh and reload (a folder made again is a new one to the OS: the old watchers see nothing).
   */
  #awaitRoot(plugin: WatchedPlugin): void {
    if (this.#done(plugin) || plugin.awaiting) return;
    plugin.awaiting = setInterval(() => {
      if (this.#done(plugin) || !fs.existsSync(plugin.root)) return;
      clearInterval(plugin.awaiting);
      plugin.awaiting = undefined;
      void this.#rewatch(plugin).then(() => this.#changed(plugin, plugin.root, 'change', null));
    }, ROOT_POLL_MS).unref();
  }

  /** Drop the plugin's watchers and watch its folder, and the folder holding it, afresh. */
  async #rewatch(plugin: WatchedPlugin): Promise<void> {
    // Back (seen by the watcher of the folder holding it before the look-out found it): the look-out is done.
    clearInterval(plugin.awaiting);
    plugin.awaiting = undefined;
    this.#watchPath(plugin);
    this.#unwatchTree(plugin, plugin.root);
    await this.#watchTree(plugin, plugin.root);
  }

  /** Tell onReload of the reload; without one, a failure is a process warning when `newFailure`. */
  #report(event: PluginReloadEvent, newFailure: boolean): void {
    const threw = (error: unknown) => process.emitWarning(`The watch option's onReload callback threw: ${thrownText(error)}`, { code: 'KB_PLUGIN_RELOAD_CALLBACK' });
    try {
      if (this.#onReload) {
        const returned: unknown = this.#onReload(event);
        // An async callback's rejection is reported as a throw is, not left unhandled.
        whenRejected(returned, threw);
        return;
      }
    } catch (error) {
      threw(error);
      return;
    }
    if (!event.ok && newFailure) process.emitWarning(`Plugin "${event.pluginId}" was not reloaded (its previous version stays registered): ${event.error.message}`, { code: 'KB_PLUGIN_RELOAD_FAILED' });
  }
}

/** Close a plugin's watchers and clear its timers. */
function stopWatching(plugin: WatchedPlugin): void {
  clearTimeout(plugin.timer);
  clearInterval(plugin.awaiting);
  plugin.awaiting = undefined;
  for (const watcher of plugin.pathWatchers) watcher.close();
  plugin.pathWatchers = [];
  for (const watcher of plugin.folders.values()) watcher.close();
  plugin.folders.clear();
}

/**
 * node_modules and anything whose name starts with a dot (`.git`, editor swap files), anywhere
 * under the plugin folder, and the folders its handlers write (a handler that keeps its data in
 * its own folder would otherwise reload its plugin with every execution).
 */
function ignored(plugin: WatchedPlugin, file: string): boolean {
  const relative = path.relative(plugin.root, file);
  if (relative === '') return false;
  if (relative.split(path.sep).some((part) => part === 'node_modules' || part.startsWith('.'))) return true;
  return plugin.writes.some((folder) => file === folder || file.startsWith(folder + path.sep));
}

/** The folders inside its own folder that a plugin's manifest lets its handlers write, as absolute paths. */
function writeFolders(plugin: RegisteredPlugin): string[] {
  const { manifest, root } = plugin;
  // Its whole folder declared writable (a manifest that skipped validation): its code is in there too, and edits to it still reload.
  return declaredWriteFolders(manifest).map((p) => path.resolve(root, p)).filter((folder) => folder !== root);
}

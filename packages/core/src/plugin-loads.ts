import { processShared, processSharedIfMade } from './host/process-shared.js';

/**
 * The loads of plugin code in this process, kept once for every copy of core in it: a host may
 * have both builds loaded (an ES host whose dependency `require()`s a backend) or two installs, and
 * Node's module cache, which these keep apart, is the process's. The host side (PluginRegistry)
 * makes the table on a global symbol; a runner uses it when its process (thread) is the host's.
 */
export interface ImportedPlugin {
  newest: number;
  /** The URL query each load was imported with. */
  queries: Map<number, string>;
}

export interface PluginLoads {
  /** The next ResolvedHandler.moduleKey. */
  next: number;
  /** What this process has imported of each plugin, by its real root (runner/plugin-generations.ts). */
  readonly imported: Map<string, ImportedPlugin>;
}

/** The process's table, made by the first copy of core that registers a plugin. */
export function hostPluginLoads(): PluginLoads {
  return processShared<PluginLoads>('plugin-loads', () => ({ next: 0, imported: new Map() }));
}

/** The host's table when this runner runs in the host's process (in-process); undefined in a thread or child of its own. */
export function hostPluginLoadsIfAny(): PluginLoads | undefined {
  return processSharedIfMade<PluginLoads>('plugin-loads');
}

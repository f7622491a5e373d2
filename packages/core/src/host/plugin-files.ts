import path from 'node:path';
import { extensionLeftOut } from '../entry-extension.js';
import { fileExists } from '../file-exists.js';
import { shownControls } from '../shown-controls.js';
import type { RegisteredPlugin } from './plugin-registry.js';
import { settledInGroups } from './settled-in-groups.js';

/**
 * What health() says of plugins whose code is not where their manifest says: a folder gone
 * (deleted under a running host), or not one of its handlers' entries there (a build not run, a
 * package not installed). Every execution of theirs would fail HANDLER_NOT_FOUND; a host that
 * checks health() at start-up learns it there. (One missing entry among others is left to that
 * handler's executions to report.)
 */
export async function missingPluginFiles(plugins: readonly RegisteredPlugin[]): Promise<string[]> {
  // A few plugins at a time: thousands of answers landing together held the host's loop (5,000 plugins: ~150 ms).
  const settled = await settledInGroups(plugins, 64, missingFilesOf);
  return settled.flatMap((s) => (s.status === 'fulfilled' && s.value !== undefined ? [s.value] : []));
}

/** What health() says of one plugin whose code is not there (its folder gone, or none of its entries in it); undefined when some is. */
export async function missingFilesOf(plugin: RegisteredPlugin): Promise<string | undefined> {
  const entries = [...new Set(Object.values(plugin.manifest.handlers).map((spec) => spec.entry))];
  // The folder is looked at only when no entry is there (one look per plugin as a rule).
  const found = await Promise.all(entries.map((entry) => fileExists(path.resolve(plugin.root, entry))));
  if (found.some(Boolean)) return undefined;
  // The folder's path and its manifest's entries written out: a host prints health() (a terminal would act on an escape sequence in them).
  const root = shownControls(plugin.root, '');
  if (!(await fileExists(plugin.root))) return `plugin "${plugin.id}": its folder ${root} does not exist`;
  const shown = entries.slice(0, 3).map((entry) => shownControls(entry, ''));
  const extension = await extensionLeftOut(path.resolve(plugin.root, entries[0]!));
  const fix = extension === undefined ? 'is it built?' : `${shown[0]}${extension} is there: give each entry in kb.plugin.json with its extension (Node adds none)`;
  return `plugin "${plugin.id}": none of its handlers' entries exists in ${root} (${shown.join(', ')}${entries.length > 3 ? ' …' : ''}): ${fix}`;
}


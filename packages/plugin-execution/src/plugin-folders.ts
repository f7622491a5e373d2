import { readdirSync, readFileSync, statSync, type Stats } from 'node:fs';
import path from 'node:path';
import { unnamedWorkingDirectory, unnamedWorkingDirectoryProblem } from '@kb-labs/plugin-execution-core/host-kit';
import { printableText } from './terminal-text.js';

const MANIFEST_FILE = 'kb.plugin.json';

/**
 * What is wrong with a plugin folder typed on the command line (`run <plugin-dir>`, `worker
 * --plugins <dir>`) when the path itself is: it does not exist, it is a file, or it holds no
 * kb.plugin.json (or a folder of that name). The CLI says it as a usage error (exit 2), in core's words. undefined when the
 * folder has a manifest: whether that manifest is valid is the registry's to say (VALIDATION_ERROR,
 * exit 1), as is a folder or manifest that cannot be read.
 */
export function pluginFolderMistake(dir: string): string | undefined {
  const root = path.resolve(dir);
  // The path as typed may hold a line break: written out, so that the mistake is one line (worker says one per folder).
  const shown = printableText(root);
  const folder = statOrCode(root);
  if (folder === 'ENOENT') return `Plugin folder ${shown} does not exist${unnamedHint(dir, root)}`;
  if (typeof folder === 'string') return undefined;
  if (!folder.isDirectory()) {
    return `Plugin folder ${shown} is a file; give the folder that holds its ${MANIFEST_FILE}${path.basename(root) === MANIFEST_FILE ? ` (${printableText(path.dirname(root))})` : ''}`;
  }
  const manifest = statOrCode(path.join(root, MANIFEST_FILE));
  if (manifest === 'ENOENT') return `No ${MANIFEST_FILE} in plugin folder ${shown}${lookAlike(root)}`;
  return typeof manifest !== 'string' && manifest.isDirectory() ? `${path.join(shown, MANIFEST_FILE)} is a folder, not a plugin's manifest` : undefined;
}

/** `file`'s stats, or the error code that stat failed with (only ENOENT is the path's mistake). */
function statOrCode(file: string): Stats | string {
  try {
    return statSync(file);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code ?? 'unreadable';
  }
}

/** A file in `root` named like a manifest but not quite (`kb.plugins.json`, `kb.plugin.jsonc`), as a hint. */
function lookAlike(root: string): string {
  let names: string[];
  try {
    names = readdirSync(root);
  } catch {
    return '';
  }
  const near = names.find((name) => /^kb[._-]?plugins?[._-]?.*\.json[c5]?$/i.test(name));
  return near ? ` (it has ${near}: name it ${MANIFEST_FILE})` : '';
}

/** The handler ids of the manifest in `dir`, for a command line that named none; empty when it cannot be read. */
export function handlerIdsOf(dir: string): string[] {
  try {
    const manifest = JSON.parse(readFileSync(path.join(path.resolve(dir), MANIFEST_FILE), 'utf8')) as { handlers?: unknown } | null;
    const handlers = manifest?.handlers;
    return handlers !== null && typeof handlers === 'object' && !Array.isArray(handlers) ? Object.keys(handlers) : [];
  } catch {
    return [];
  }
}

/** Why a relative folder that is there reads as missing: the working directory's path is not UTF-8 text (core's unnamedWorkingDirectory). */
function unnamedHint(dir: string, root: string): string {
  const unnamed = path.isAbsolute(dir) ? undefined : unnamedWorkingDirectory();
  return unnamed && root.startsWith(unnamed) ? ` (${unnamedWorkingDirectoryProblem(unnamed)})` : '';
}

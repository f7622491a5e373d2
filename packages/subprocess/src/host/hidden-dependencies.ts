import { lstatSync, readdirSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { shownControls } from '@kb-labs/plugin-execution-core/backend-kit';

/** How many entries of `node_modules` are looked at, at most (a plugin's own dependencies, and their scopes). */
const MAX_ENTRIES = 2000;

/**
 * The links out of each plugin folder, read once per folder (the last MAX_CHECKED: a host that
 * deploys each release to a new folder checks a new one each time), and those warned of. What is
 * hidden depends on what the child is shown (the backend's `allowRead`, the handler's grants), so
 * that a link one backend shows and another in the same process hides is warned of for the second.
 */
const checked = new Map<string, { links: ReadonlyArray<{ at: string; to: string }>; warned: Set<string> }>();
const MAX_CHECKED = 256;

/**
 * A sandboxed child sees its plugin's folder, not what links in it lead to (a plugin may not
 * show itself the host's files by shipping a link), so a dependency linked in from elsewhere (an
 * npm or pnpm workspace, `npm link`, a `file:` dependency) cannot be loaded there: the handler
 * fails with "Cannot find package". Said once per plugin folder and link, naming the links, when
 * the first sandboxed child that does not see it starts.
 */
export function warnOfHiddenDependencies(pluginRoot: string, shown: readonly string[] = []): void {
  let folder = checked.get(pluginRoot);
  if (!folder) {
    if (checked.size >= MAX_CHECKED) checked.delete(checked.keys().next().value!);
    folder = { links: linksOutOf(pluginRoot), warned: new Set() };
    checked.set(pluginRoot, folder);
  }
  if (folder.links.length === 0) return;
  // A link into a folder the child reads anyway (core, a node_modules folder above the plugin's,
  // `allowRead`) loads there: pnpm's links into its store, in a monorepo, are not hidden.
  const visible = shown.map((p) => (p.endsWith(`${path.sep}*`) ? p.slice(0, -2) : p));
  const { warned } = folder;
  const links = folder.links.filter((link) => !warned.has(link.at) && !visible.some((dir) => link.to === dir || link.to.startsWith(`${dir}${path.sep}`)));
  if (links.length === 0) return;
  for (const link of links) warned.add(link.at);
  // Names the plugin ships (and where they lead), written out: Node prints a warning to stderr, whose terminal would act on an escape sequence in them.
  const written = (text: string) => shownControls(text, '');
  const named = links.slice(0, 5).map((l) => `${written(l.at)} -> ${written(l.to)}`);
  const more = links.length > named.length ? ` and ${links.length - named.length} more` : '';
  process.emitWarning(
    `Plugin folder ${written(pluginRoot)}: ${named.join(', ')}${more} lead(s) outside the plugin folder, which the bubblewrap sandbox does not show, ` +
      'so its handlers cannot load them there. Install the dependencies into the plugin folder (npm install --install-links, pnpm deploy). ' +
      'See docs/backends/subprocess.md.',
    { code: 'KB_PLUGIN_SANDBOX_HIDDEN_DEPENDENCIES' },
  );
}

/** The entries of `<pluginRoot>/node_modules` (and of its `@scope` folders) that are links whose real path is outside the plugin folder. */
export function linksOutOf(pluginRoot: string): Array<{ at: string; to: string }> {
  let root: string;
  try {
    root = realpathSync(pluginRoot);
  } catch {
    return [];
  }
  const found: Array<{ at: string; to: string }> = [];
  const entries = list(path.join(pluginRoot, 'node_modules'));
  for (let i = 0; i < entries.length && i < MAX_ENTRIES; i++) {
    const entry = entries[i]!;
    const rel = path.relative(pluginRoot, entry);
    let isLink: boolean;
    try {
      isLink = lstatSync(entry).isSymbolicLink();
    } catch {
      continue;
    }
    if (!isLink) {
      if (path.basename(entry).startsWith('@') && path.dirname(entry) === path.join(pluginRoot, 'node_modules')) entries.push(...list(entry));
      continue;
    }
    let to: string;
    try {
      to = realpathSync(entry);
    } catch {
      continue;
    }
    if (to !== root && !to.startsWith(`${root}${path.sep}`)) found.push({ at: rel, to });
  }
  return found;
}

function list(dir: string): string[] {
  try {
    return readdirSync(dir).filter((name) => !name.startsWith('.')).map((name) => path.join(dir, name));
  } catch {
    return [];
  }
}

/**
 * A handler whose import of a package failed in the sandbox ("Cannot find package 'x'") where the
 * host has it, through a link in a node_modules folder at or above the plugin's (an npm or pnpm
 * workspace, `npm link`), whose real place the sandbox does not show: the words that say so, for
 * the end of its error message; undefined otherwise. Looked for only after such a failure.
 */
export function hiddenPackageNote(pluginRoot: string, message: string, shown: readonly string[]): string | undefined {
  const name = /Cannot find (?:package|module) '((?:@[^/']+\/)?[^/'.][^/']*)/.exec(message)?.[1];
  if (!name) return undefined;
  for (let dir = path.resolve(pluginRoot); ; dir = path.dirname(dir)) {
    const at = path.join(dir, 'node_modules', name);
    let to: string | undefined;
    try {
      // A real folder where Node looks first: no link to blame.
      if (!lstatSync(at).isSymbolicLink()) return undefined;
      to = realpathSync(at);
    } catch {
      to = undefined;
    }
    if (to !== undefined) {
      const real = to;
      if (shown.map((p) => (p.endsWith(`${path.sep}*`) ? p.slice(0, -2) : p)).some((folder) => real === folder || real.startsWith(`${folder}${path.sep}`))) return undefined;
      return ` (on the host, ${at} is a link to ${to}, which the bubblewrap sandbox does not show: install the plugin's dependencies into its folder, npm install --install-links or pnpm deploy, or grant that folder with allowRead; see docs/backends/subprocess.md)`;
    }
    if (path.dirname(dir) === dir) return undefined;
  }
}

import { existsSync, lstatSync, realpathSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { hostMayAccess } from '@kb-labs/plugin-execution-core/backend-kit';

/**
 * The child's entry script, built next to this module (tinypool-style: found relative to our
 * own URL). The CommonJS build: Node starts a CommonJS main script ~5 ms sooner than an ES
 * module one, and every execution pays that start. The ES module loader still comes up, once,
 * when the handler is imported.
 */
export function childEntryPath(): string {
  return fileURLToPath(new URL('./child-entry.cjs', import.meta.url));
}

let runtimeReadPaths: string[] | undefined;

/**
 * Folders the child must read to boot: this package (its dist and the node_modules links it
 * resolves through) and the core package it imports. Both the path as seen and its real path
 * are listed, because pnpm links packages into node_modules/.pnpm and Node's loader reads a
 * module by its real path but looks packages up through the links.
 */
export function runtimePaths(): string[] {
  if (runtimeReadPaths) return runtimeReadPaths;
  const ownRoot = path.resolve(path.dirname(childEntryPath()), '..');
  const require = createRequire(childEntryPath());
  const coreRoot = path.dirname(require.resolve('@kb-labs/plugin-execution-core/package.json'));
  runtimeReadPaths = uniquePaths([ownRoot, coreRoot].flatMap(withRealPath));
  return runtimeReadPaths;
}

/**
 * The `node_modules` folders on the way from `dir` up to the filesystem root: where the plugin's
 * bare imports (`import 'zod'`) resolve, exactly as Node's own lookup walks them. A plugin
 * installed with its dependencies inside its folder needs none of these; a plugin inside a
 * monorepo needs its ancestors'.
 */
export const dependencyFolders = oncePerFolder(findDependencyFolders);

/**
 * `find`, remembered per folder and where it really is: walking up and realpathing costs a few
 * syscalls per level, and once per plugin folder is enough, until a link on its path is
 * re-pointed (a `current` link switched to a new release, whose folders above the plugin are
 * others). Plugins are few; the bound only guards against a host registering them without end.
 */
export function oncePerFolder<T>(find: (dir: string) => T): (dir: string) => T {
  const cache = new Map<string, T>();
  return (dir) => {
    const key = withRealPath(dir).join('\0');
    if (cache.has(key)) return cache.get(key)!;
    const found = find(dir);
    if (cache.size >= 1024) cache.clear();
    cache.set(key, found);
    return found;
  };
}

function findDependencyFolders(dir: string): string[] {
  const out: string[] = [];
  let current = path.resolve(dir);
  for (;;) {
    const parent = path.dirname(current);
    if (parent === current) break;
    current = parent;
    if (path.basename(current) === 'node_modules') continue;
    const candidate = path.join(current, 'node_modules');
    // Not one the host itself may not read under Node's permission model (a host granted its own
    // project's folders has no /node_modules to pass on): a plugin is never granted what its host was not.
    if (hostMayAccess('fs.read', candidate) && existsSync(candidate)) out.push(...withRealPath(candidate));
  }
  return out;
}

/** `p` and, when different, its real path (symlinked folders, /var → /private/var on macOS). */
export function withRealPath(p: string): string[] {
  const resolved = path.resolve(p);
  try {
    const real = realpathSync.native(resolved);
    return real === resolved ? [resolved] : [resolved, real];
  } catch {
    return [resolved];
  }
}

export function uniquePaths(paths: Iterable<string>): string[] {
  return [...new Set(paths)];
}

/**
 * The package.json that decides how Node loads the plugin's `.js` files (`"type"`): the nearest
 * one at or above its folder, as Node looks for it (not past a `node_modules` folder). Granted,
 * and shown in the sandbox, so that the child loads a module as the host does: without it an ES
 * module `.js` under a `"type": "commonjs"` project would run in the sandbox and fail elsewhere.
 */
export const packageScopeFile = oncePerFolder(findPackageScopeFile);

function findPackageScopeFile(dir: string): string[] {
  // From where the plugin's files really are: Node looks up from a module's real path.
  let start: string;
  try {
    start = realpathSync.native(dir);
  } catch {
    return [];
  }
  for (let current = start; path.basename(current) !== 'node_modules'; current = path.dirname(current)) {
    const candidate = path.join(current, 'package.json');
    let isLink: boolean;
    try {
      isLink = lstatSync(candidate).isSymbolicLink();
    } catch {
      if (path.dirname(current) === current) break;
      continue;
    }
    // The plugin's own is in its folder, shown already. One that is a link is never followed:
    // the plugin could ship `package.json -> /etc/shadow`, and what it leads to would be granted.
    return current === start || isLink ? [] : [candidate];
  }
  return [];
}

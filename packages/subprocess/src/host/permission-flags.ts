import { existsSync, lstatSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { PermissionDeniedError, ValidationError, type PermissionSpec } from '@kb-labs/plugin-execution-core';
import { permissionModelFlag, shownControls, type PermissionFlag } from '@kb-labs/plugin-execution-core/backend-kit';
import { dependencyFolders, packageScopeFile, runtimePaths, uniquePaths, withRealPath } from './runtime-paths.js';

/** Which spelling of Node's permission model a Node takes (core's permissionModelFlag; a child's on another Node: ChildNode.flags). */
export const detectPermissionFlag = permissionModelFlag;
export type { PermissionFlag };

/** Everything the child's Node flags depend on. Two tasks with equal profiles can share a warm spare. */
export interface ChildProfile {
  pluginRoot: string;
  /** `fs.read` / `fs.write` of the handler's manifest, relative to the plugin folder. */
  fsRead: readonly string[];
  fsWrite: readonly string[];
  childProcess: boolean;
  network: boolean;
  /** Folder the child may read and write: the lease directory (cold) or the workspace root (spare). */
  workspaceGrant: string | undefined;
  memoryMb: number | undefined;
}

export function profileOf(
  task: { pluginRoot: string; permissions: PermissionSpec; memoryMb: number | undefined },
  workspaceGrant: string | undefined,
  defaultMemoryMb: number | undefined,
): ChildProfile {
  const p = task.permissions;
  return {
    pluginRoot: task.pluginRoot,
    fsRead: [...(p.fs?.read ?? [])].sort(),
    fsWrite: [...(p.fs?.write ?? [])].sort(),
    childProcess: p.childProcess === true,
    network: p.network === true,
    workspaceGrant,
    memoryMb: task.memoryMb ?? defaultMemoryMb,
  };
}

export function profileKey(profile: ChildProfile): string {
  return JSON.stringify(profile);
}

export interface FlagOptions {
  /** Use Node's permission model at all. */
  enforce: boolean;
  /** The flags the children's Node accepts (ChildNode.flags): theirs, not the host's, decide. */
  accepted: ReadonlySet<string>;
  /** Extra folders every child may read (host-configured). */
  extraReadPaths: readonly string[];
  /** Also let the plugin read the `node_modules` folders above its root. */
  readAncestorNodeModules: boolean;
}

/** The folders a child of this profile may read and write: what its Node flags and its sandbox both grant. */
export interface FsGrants {
  read: string[];
  write: string[];
}

/**
 * Each declared `fs.read` / `fs.write` path, as a folder inside the plugin's: checked by where it
 * really leads, not by its text. A manifest's paths already stay inside the plugin folder as
 * written, but a plugin can ship `out` as a symbolic link to `/etc`: granted as it leads, the
 * sandbox would bind `/etc` writable (and hand it to the sandbox user). Refused with
 * PERMISSION_DENIED, before anything is created, bound or handed over.
 */
export function declaredFolders(profile: Pick<ChildProfile, 'pluginRoot' | 'fsRead' | 'fsWrite'>): { read: string[]; write: string[] } {
  const root = realOf(path.resolve(profile.pluginRoot));
  const inside = (access: 'read' | 'write') => (rel: string) => {
    const folder = path.resolve(profile.pluginRoot, rel);
    // The manifest's path, and where it leads, as a message quotes them: their control characters written out (details keep them).
    const quoted = shownControls(rel, '');
    // The host checked the text with "\" read as "/" ("data\x/../y" as "data/y"); here it is a
    // character of a name, and the path something else (<root>/y): refused unless both agree.
    if (rel.includes('\\') && path.sep === '/') {
      throw new PermissionDeniedError(`The plugin's fs.${access} path "${quoted}" contains "\\", which the permission check reads as "/" and this system as part of a name: refused`, {
        details: { resource: `fs.${access}:${rel}`, path: folder },
      });
    }
    const real = realOf(folder);
    if (real !== root && !real.startsWith(root + path.sep)) {
      throw new PermissionDeniedError(`The plugin's fs.${access} path "${quoted}" leads outside the plugin folder (to ${shownControls(real, '')}, through a symbolic link): refused`, {
        details: { resource: `fs.${access}:${rel}`, path: real },
      });
    }
    // A link that stays inside is refused too: where it leads can change between this check and
    // the bind (a handler may re-point links in a folder it writes), and its text hides that the
    // path lies in such a folder (`lnk/sub` being `out/sub`).
    const link = linkOnTheWay(profile.pluginRoot, folder);
    if (link) {
      throw new PermissionDeniedError(`The plugin's fs.${access} path "${quoted}" passes through a symbolic link (${shownControls(link, '')}): declared paths may not, since where a link leads can change before it is used: refused`, {
        details: { resource: `fs.${access}:${rel}`, path: link },
      });
    }
    if (access === 'write') checkWritableFile(rel, folder);
    return folder;
  };
  return { read: profile.fsRead.map(inside('read')), write: profile.fsWrite.map(inside('write')) };
}

/**
 * A declared write path that exists and is not a folder must be a regular file with no other
 * name: a hard link shares its bytes (and its owner, which the sandbox hands to its user) with a
 * file elsewhere — pnpm's store links every copy of a file to one — and a FIFO or a device is
 * not the plugin's to write. (A folder cannot have another name.)
 */
function checkWritableFile(rel: string, file: string): void {
  const stat = lstatSync(file, { throwIfNoEntry: false });
  if (!stat || stat.isDirectory()) return;
  const problem = !stat.isFile() ? 'is not a regular file (a FIFO, a socket or a device)' : stat.nlink > 1 ? `is a hard link (a file with ${stat.nlink} names: writing it writes the others, which may lie outside the plugin folder)` : undefined;
  if (!problem) return;
  throw new PermissionDeniedError(`The plugin's fs.write path "${shownControls(rel, '')}" ${problem}: refused`, { details: { resource: `fs.write:${rel}`, path: file } });
}

/** The first part of `folder`, below `pluginRoot`, that is a symbolic link; undefined when none is (parts not made yet are not). */
function linkOnTheWay(pluginRoot: string, folder: string): string | undefined {
  let current = path.resolve(pluginRoot);
  for (const part of path.relative(current, folder).split(path.sep).filter(Boolean)) {
    current = path.join(current, part);
    try {
      if (lstatSync(current).isSymbolicLink()) return current;
    } catch {
      return undefined;
    }
  }
  return undefined;
}

/** Where `p` really is: the real path of its deepest existing folder, and the rest as written. */
function realOf(p: string): string {
  let existing = p;
  const rest: string[] = [];
  for (;;) {
    try {
      return path.join(realpathSync.native(existing), ...rest.reverse());
    } catch {
      const parent = path.dirname(existing);
      if (parent === existing) return p;
      rest.push(path.basename(existing));
      existing = parent;
    }
  }
}

/** Least privilege for the task: the runtime, its plugin folder, its declared paths, its workspace. */
export function fsGrants(profile: ChildProfile, options: Omit<FlagOptions, 'enforce'>): FsGrants {
  declaredFolders(profile);
  const pluginRoots = withRealPath(profile.pluginRoot);
  const inPlugin = (rel: string) => pluginRoots.flatMap((base) => grantFolder(path.resolve(base, rel)));
  const workspace = profile.workspaceGrant ? grantFolder(profile.workspaceGrant) : [];
  const read = uniquePaths([
    ...runtimePaths(),
    ...pluginRoots,
    ...(options.readAncestorNodeModules ? dependencyFolders(profile.pluginRoot) : []),
    ...packageScopeFile(profile.pluginRoot),
    ...profile.fsRead.flatMap(inPlugin),
    ...profile.fsWrite.flatMap(inPlugin),
    ...workspace,
    ...options.extraReadPaths.flatMap(withRealPath),
  ]);
  const write = uniquePaths([...profile.fsWrite.flatMap(inPlugin), ...workspace]);
  return { read, write };
}

/** Node flags (before the entry script) for a child of this profile: least privilege for the task, `grants` as `fsGrants` made them. */
export function nodeFlags(profile: ChildProfile, options: FlagOptions, grants: FsGrants): string[] {
  const flags: string[] = [];
  if (profile.memoryMb !== undefined) flags.push(`--max-old-space-size=${Math.max(8, Math.floor(profile.memoryMb))}`);
  const accepted = options.accepted;
  const model = options.enforce ? detectPermissionFlag(accepted) : null;
  if (!model) return flags;
  const { read, write } = grants;
  const granted = new Set([...read, ...write]);
  for (const p of granted) {
    // Node 20 splits these flag values on commas ("/a,/etc" would grant /etc), and reads a `*`
    // anywhere in one as a wildcard ("/w/star*/root" would grant "/w/starOUT.txt"): neither escapes.
    const odd = p.includes(',') ? 'comma' : ownPath(p, granted).includes('*') ? 'wildcard' : undefined;
    if (odd) {
      throw new ValidationError(`Cannot restrict a child to ${shownControls(JSON.stringify(p), '')}: Node's permission flags cannot express a path containing ${odd === 'comma' ? 'a comma' : 'a `*` (read as a wildcard)'}; move it to a path without one`, {
        details: { path: p, reason: `${odd}-in-path` },
      });
    }
  }
  flags.push(model);
  // node:sqlite (unflagged on Node 22.13+ and 24) opens, creates and attaches database files
  // anywhere, unchecked by the model: off, where this Node can turn it off.
  if (accepted.has('--no-experimental-sqlite')) flags.push('--no-experimental-sqlite');
  // The model prints an ExperimentalWarning on every start on Node 20; it is noise in the
  // handler's captured stderr, not information.
  if (accepted.has('--disable-warning')) flags.push('--disable-warning=ExperimentalWarning');
  // `/` granted (allowRead: ['/']) covers every read: Node 20's permission tree denies `/` itself
  // when other paths are granted beside it. (The sandbox still shows each granted path.)
  for (const p of read.includes(path.sep) ? [path.sep] : wildcardAlone(read, model)) flags.push(`--allow-fs-read=${p}`);
  for (const p of wildcardAlone(write, model)) flags.push(`--allow-fs-write=${p}`);
  if (profile.childProcess) {
    // Node's permission model does not follow a process into its children or its worker
    // threads: granting either lifts every restriction for the code that runs there.
    flags.push('--allow-child-process', '--allow-worker');
    // Node says so (a SecurityWarning per flag) in every such child's stderr: the host granted it
    // knowingly (docs/backends/subprocess.md), and each execution's output would carry the lines.
    if (accepted.has('--disable-warning')) flags.push('--disable-warning=SecurityWarning');
  }
  // Node 25+ restricts the network under the permission model and takes `--allow-net` to lift it.
  if (profile.network && accepted.has('--allow-net')) flags.push('--allow-net');
  return flags;
}

/**
 * Node 20's model (spelled `--experimental-permission`) takes a folder that exists as its wildcard
 * and aborts at start-up (an assertion in its path tree) given both: a folder not there when the
 * flags were made (grantFolder) may be by the time the child's Node reads them, made meanwhile by
 * another execution's handler. There its wildcard alone covers the folder, itself included.
 */
function wildcardAlone(grants: string[], model: PermissionFlag): string[] {
  return model === '--experimental-permission' ? grants.filter((p) => !grants.includes(`${p}${path.sep}*`)) : grants;
}

/** A grant without the `/*` grantFolder gives a folder not made yet, beside the folder itself (its own wildcard, the only one meant). */
function ownPath(grant: string, granted: Set<string>): string {
  const folder = grant.slice(0, -2);
  return grant.endsWith(`${path.sep}*`) && granted.has(folder) ? folder : grant;
}

/**
 * Grant entries for a folder. One that exists is granted as itself (and its real path). One
 * that does not exist yet (an `out` folder the handler creates) would be taken by Node as a
 * single file, so its contents are granted with a wildcard too — only then: Node 20 aborts at
 * start-up (a failed assertion in its path tree) when given an existing folder and its wildcard,
 * and takes the wildcard alone for both (wildcardAlone).
 */
function grantFolder(folder: string): string[] {
  return existsSync(folder) ? withRealPath(folder) : [folder, `${folder}${path.sep}*`];
}

import path from 'node:path';
import type { z } from 'zod';
import { PermissionDeniedError } from '../errors.js';
import { LANGUAGE_HOOK_NAMES } from '../runner/platform-proxy.js';
import { shownControls } from '../shown-controls.js';
import { lazySchema } from './lazy-zod.js';

/**
 * Names no method may have: they reach an object's machinery (platform-gateway.ts refuses a call
 * of one), or the language reads them (`then`, `toJSON`, `toString` …: `ctx.platform` answers
 * those itself, platform-proxy.ts, and never calls one).
 */
const RESERVED_METHODS = ['__proto__', 'constructor', 'prototype', '__defineGetter__', '__defineSetter__', '__lookupGetter__', '__lookupSetter__', 'caller', 'arguments', ...LANGUAGE_HOOK_NAMES];
/** Nor may a service be named as what every object has (`valueOf`, `hasOwnProperty` …): a call of one is refused. */
const RESERVED_SERVICES = [...new Set([...RESERVED_METHODS, ...Object.getOwnPropertyNames(Object.prototype)])];

/** A pattern that refuses `names` (the JSON Schema of the manifest says it too, where a refine would not show). */
function notOneOf(names: readonly string[]): RegExp {
  return new RegExp(`^(?!(?:${names.join('|')})$)`);
}

/**
 * What a handler needs (manifest) or what a host grants (context / backend option).
 * `platform`: service → `true` (every method) or the method names.
 * `fs` paths are relative to the plugin folder; the workspace is always readable and writable.
 */
export const permissionSpecSchema = lazySchema((z) => {
  const identifier = z.string().regex(/^[A-Za-z_$][\w$.-]*$/, 'must be an identifier');
  const serviceName = identifier.regex(notOneOf(RESERVED_SERVICES), 'is a reserved name (every object has it, or the language reads it: ctx.platform never calls it)');
  const methodName = identifier.regex(notOneOf(RESERVED_METHODS), 'is a reserved name (ctx.platform never calls it)');
  const relativeFsPath = z
    .string()
    .min(1)
    .refine((p) => !p.includes('\0'), 'must not contain NUL')
    .refine((p) => !path.isAbsolute(p) && !path.win32.isAbsolute(p), 'must be relative to the plugin folder')
    // As for `entry`: on Linux "\" is a character of a name, so "data\x/../kb.plugin.json" (checked as
    // "data/kb.plugin.json") would name the manifest, beside the folder granted.
    .regex(/^[^\\]*$/, 'must use "/" between folders, not "\\"')
    .refine((p) => !normalizeRelative(p).startsWith('..'), 'must stay inside the plugin folder')
    // What of these (and of the "*" and "," refused for the manifest) a JSON Schema can say, for editors: no ".." first, not absolute, no "*", "," nor NUL.
    .meta({ pattern: /^(?!(?:\.\/)*\.\.(?:\/|$))(?![/\\])(?![A-Za-z]:[/\\])[^*,\\\x00]*$/.source });
  const envName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name');
  return z.strictObject({
    platform: z
      .record(serviceName, z.union([z.literal(true), z.array(methodName)], { error: 'must be true (every method) or an array of method names' }))
      .optional()
      .describe('Host platform services the handler may call (ctx.platform): service name → true (every method) or the method names.'),
    fs: z
      .strictObject({
        read: z.array(relativeFsPath).optional().describe('Paths relative to the plugin folder the handler may read.'),
        write: z.array(relativeFsPath).optional().describe('Paths relative to the plugin folder the handler may write.'),
      })
      .optional()
      .describe('File access beyond the workspace (always readable and writable), enforced where the backend can (subprocess).'),
    env: z.array(envName).optional().describe('Environment variables the handler sees; every other one is hidden.'),
    network: z.boolean().optional().describe('Whether the handler may use the network (enforced by the subprocess sandbox).'),
    childProcess: z.boolean().optional().describe('Whether the handler may start processes (enforced by the subprocess backend).'),
  });
});

export type PermissionSpec = z.infer<ReturnType<typeof permissionSpecSchema>>;

function normalizeRelative(p: string): string {
  const n = path.posix.normalize(p.replaceAll('\\', '/')).replace(/\/+$/, '');
  return n === '' ? '.' : n;
}

function union<T>(a: readonly T[] | undefined, b: readonly T[] | undefined): T[] | undefined {
  if (!a && !b) return undefined;
  return [...new Set([...(a ?? []), ...(b ?? [])])];
}

/** Handler-level spec merged over the plugin-level one: lists (fs, env, platform methods) are united, booleans overridden. */
export function mergePermissions(base: PermissionSpec | undefined, over: PermissionSpec | undefined): PermissionSpec {
  if (!over) return base ? { ...base } : {};
  if (!base) return { ...over };
  const out: PermissionSpec = {};
  if (base.platform || over.platform) {
    // Per service: `true` on either side wins; method lists are united.
    const platform: NonNullable<PermissionSpec['platform']> = { ...base.platform };
    for (const [service, methods] of Object.entries(over.platform ?? {})) {
      const before = Object.hasOwn(platform, service) ? platform[service] : undefined;
      // defineProperty, not assignment: a JSON-made own "__proto__" key must stay data.
      Object.defineProperty(platform, service, {
        value: before === true || methods === true ? true : (union(before, methods) ?? []),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    out.platform = platform;
  }
  const read = union(base.fs?.read, over.fs?.read);
  const write = union(base.fs?.write, over.fs?.write);
  if (read || write) out.fs = { ...(read ? { read } : {}), ...(write ? { write } : {}) };
  const env = union(base.env, over.env);
  if (env) out.env = env;
  const network = over.network ?? base.network;
  if (network !== undefined) out.network = network;
  const childProcess = over.childProcess ?? base.childProcess;
  if (childProcess !== undefined) out.childProcess = childProcess;
  return out;
}

function pathCovered(need: string, granted: readonly string[] | undefined): boolean {
  if (!granted) return false;
  // A path outside the plugin folder is never covered, not even by ".": this check must hold for
  // specs that did not come through permissionSpecSchema().
  // Nor one with a "\": normalised, "data\x/../y" reads as "data/y", but a POSIX child is given <root>/y.
  if (typeof need !== 'string' || need.includes('\0') || need.includes('\\') || path.isAbsolute(need) || path.win32.isAbsolute(need)) return false;
  const n = normalizeRelative(need);
  if (n === '..' || n.startsWith('../')) return false;
  return granted.some((g) => {
    const gn = normalizeRelative(g);
    return gn === '.' || gn === n || n.startsWith(`${gn}/`);
  });
}

/** Each thing `need` asks for that `grant` does not give, as a readable resource name. */
export function missingPermissions(need: PermissionSpec, grant: PermissionSpec | undefined): string[] {
  const missing: string[] = [];
  const g = grant ?? {};
  for (const [service, methods] of Object.entries(need.platform ?? {})) {
    const granted = Object.hasOwn(g.platform ?? {}, service) ? g.platform![service] : undefined;
    if (granted === true) continue;
    if (methods === true) {
      missing.push(granted ? `platform.${service}.* (granted only ${granted.join(', ') || 'nothing'})` : `platform.${service}`);
      continue;
    }
    for (const method of methods) {
      if (!granted || !granted.includes(method)) missing.push(`platform.${service}.${method}`);
    }
  }
  for (const p of need.fs?.read ?? []) {
    if (!pathCovered(p, g.fs?.read) && !pathCovered(p, g.fs?.write)) missing.push(`fs.read:${p}`);
  }
  for (const p of need.fs?.write ?? []) if (!pathCovered(p, g.fs?.write)) missing.push(`fs.write:${p}`);
  for (const name of need.env ?? []) if (!(g.env ?? []).includes(name)) missing.push(`env:${name}`);
  if (need.network && !g.network) missing.push('network');
  if (need.childProcess && !g.childProcess) missing.push('childProcess');
  return missing;
}

export interface PermissionSubject {
  pluginId: string;
  handlerId: string;
}

/** PermissionDeniedError before any plugin code runs, listing what is needed and not granted. */
export function assertGranted(need: PermissionSpec, grant: PermissionSpec | undefined, subject: PermissionSubject): void {
  const missing = missingPermissions(need, grant);
  if (missing.length === 0) return;
  // A manifest's fs paths are its own text: written out in the message a host prints (details keep them).
  const shown = missing.map((each) => shownControls(each, ''));
  throw new PermissionDeniedError(
    `Handler "${subject.handlerId}" of plugin "${subject.pluginId}" needs permissions the host did not grant: ${shown.join(', ')} ` +
      "(a host grants them with the backend's `permissions` option, or for one request with context.permissions)",
    { details: { ...subject, missing, phase: 'preflight' } },
  );
}

/** True when the handler's own spec allows `service.method` (least privilege: the need, not the grant). */
export function allowsPlatformCall(need: PermissionSpec, service: string, method: string): boolean {
  const platform = need.platform;
  if (!platform || !Object.hasOwn(platform, service)) return false;
  const methods = platform[service];
  return methods === true || (Array.isArray(methods) && methods.includes(method));
}

/** A declared fs path that lies inside a declared fs.write folder (see pathsInsideWriteFolders). */
export interface NestedPathIssue {
  path: Array<string | number>;
  message: string;
}

/**
 * Declared fs paths a plugin may not have: the plugin folder itself as a write folder (its
 * handlers could rewrite the manifest and code the host loads, and the subprocess sandbox hands
 * a write folder to its user for good), a "*" (Node's permission model reads it as a wildcard), a ","
 * (Node's permission flags split their value at commas: the subprocess backend could only refuse it, at run time),
 * what writePathProblem refuses, and paths inside a declared write folder (pathsInsideWriteFolders).
 */
export function declaredPathProblems(specs: ReadonlyArray<{ at: Array<string | number>; spec: unknown }>, loaded: ReadonlyArray<{ file: string; what: string }> = []): NestedPathIssue[] {
  const issues: NestedPathIssue[] = [];
  const loadedTree = pathTree(loaded.map(({ file }) => folded(file)));
  for (const { at, spec } of specs) {
    for (const kind of ['read', 'write'] as const) {
      fsList(spec, kind).forEach((p, index) => {
        const problem = p.includes('*')
          ? 'must not contain "*" (Node\'s permission model reads it as a wildcard): name the folder'
          : p.includes(',')
            ? 'must not contain "," (Node\'s permission flags split a path at a comma, and the subprocess backend cannot grant it): rename the folder'
            : kind === 'write'
              ? writePathProblem(normalizeRelative(p), loaded, loadedTree)
              : undefined;
        if (problem) issues.push({ path: [...at, 'fs', kind, index], message: problem });
      });
    }
  }
  return [...issues, ...pathsInsideWriteFolders(specs)];
}

/**
 * A path as a file system that ignores letter case and Unicode form compares names (macOS's and
 * Windows' by default): a manifest is read alike on every OS, and there "DIST" opens "dist".
 */
function folded(p: string): string {
  return p.normalize('NFC').toLowerCase();
}

/** Why a declared fs.write path (`n`, normalised) may not be one, if it may not. */
function writePathProblem(n: string, loaded: ReadonlyArray<{ file: string; what: string }>, loadedTree: PathNode): string | undefined {
  const key = folded(n);
  if (key.split('/').includes('node_modules')) return "is in a node_modules folder: the plugin's bare imports resolve there, so a handler that writes it could rewrite code the host loads";
  if (n === '.') return 'is the plugin folder itself: its handlers could rewrite the manifest and code the host loads; declare a folder inside it, such as "data"';
  // The first loaded file that is `n` or lies below it, letter case and Unicode form aside.
  const below = key.split('/').reduce<PathNode | undefined>((at, part) => at?.parts.get(part), loadedTree)?.below;
  const held = below === undefined ? undefined : loaded[below];
  if (!held) return undefined;
  const spelt = held.file === n || held.file.startsWith(`${n}/`) ? '' : ', named in other letter case or Unicode form (a file system that ignores those, as macOS\'s and Windows\' do by default, opens the same file)';
  return `${folded(held.file) === key ? 'is' : 'holds'} ${held.what}${spelt}: a handler that writes it could rewrite what the host loads; declare a folder of its own, such as "data"`;
}

/**
 * Declared fs paths (plugin-level or of any handler) that lie inside another declared fs.write
 * folder of the same plugin. A handler may rename and link inside a folder it writes, so such a
 * path can be swapped for a link out of the plugin folder between the moment a host checks where
 * it leads and the moment it is used (the subprocess sandbox binds it): refused. The outer
 * folder's grant already covers it. `specs`: each spec with where it is in the manifest.
 */
function pathsInsideWriteFolders(specs: ReadonlyArray<{ at: Array<string | number>; spec: unknown }>): NestedPathIssue[] {
  const writeFolders: Array<{ folder: string; declared: string }> = [];
  for (const { spec } of specs) for (const p of fsList(spec, 'write')) writeFolders.push({ folder: folded(normalizeRelative(p)), declared: p });
  // By their parts, not compared pairwise: a manifest of 100,000 handlers each with a write folder
  // held the host's event loop for minutes.
  const tree = pathTree(writeFolders.map(({ folder }) => folder));
  const issues: NestedPathIssue[] = [];
  for (const { at, spec } of specs) {
    for (const kind of ['read', 'write'] as const) {
      fsList(spec, kind).forEach((p, index) => {
        const n = folded(normalizeRelative(p));
        // The first write folder that is "." or a folder above `n` (letter case and Unicode form aside).
        let first = n === '.' ? undefined : tree.parts.get('.')?.here;
        let node: PathNode | undefined = tree;
        const parts = n.split('/');
        for (const part of parts.slice(0, -1)) {
          node = node.parts.get(part);
          if (!node) break;
          if (node.here !== undefined && (first === undefined || node.here < first)) first = node.here;
        }
        const outer = first === undefined ? undefined : writeFolders[first];
        if (!outer) return;
        issues.push({
          path: [...at, 'fs', kind, index],
          message:
            `lies inside the declared fs.write folder ${JSON.stringify(outer.declared)}: a folder a handler writes may not hold another declared path ` +
            '(its writer could replace it with a link out of the plugin folder); declare the outer folder only, it covers this one',
        });
      });
    }
  }
  return issues;
}

/** Paths by their "/"-separated parts; each node knows the first path (its index) that ends there (`here`), and that ends there or below (`below`). */
interface PathNode {
  parts: Map<string, PathNode>;
  here?: number;
  below?: number;
}

function pathTree(paths: readonly string[]): PathNode {
  const root: PathNode = { parts: new Map() };
  paths.forEach((p, index) => {
    let node = root;
    for (const part of p.split('/')) {
      let next = node.parts.get(part);
      if (!next) node.parts.set(part, (next = { parts: new Map() }));
      node = next;
      node.below ??= index;
    }
    node.here ??= index;
  });
  return root;
}

/** `spec.fs[kind]`'s strings, read defensively (the manifest may be partly invalid). */
function fsList(spec: unknown, kind: 'read' | 'write'): string[] {
  const list = (spec as { fs?: Record<string, unknown> } | undefined)?.fs?.[kind];
  return Array.isArray(list) ? list.filter((p): p is string => typeof p === 'string' && p.length > 0 && !p.includes('\0')) : [];
}

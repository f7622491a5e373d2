import path from 'node:path';
import { ValidationError } from '../errors.js';
import { notModuleFile } from '../module-file.js';
import { parseWith, validationError, type ValidationIssue } from '../validation.js';
import { duplicateJsonKeys } from './json-duplicate-keys.js';
import { jsonSyntaxProblem } from './json-syntax.js';
import { MANIFEST_FILE, declaredWriteFolders, pluginManifestSchema, type PluginManifest } from './manifest.js';
import { unnamedWorkingDirectory, unnamedWorkingDirectoryProblem } from './working-directory.js';
// node:fs/promises on first use (`fs.promises`): Node loads it on demand, ~5 ms, and importing core should not.
const fs = process.getBuiltinModule('node:fs');
const { fileURLToPath } = process.getBuiltinModule('node:url');

/** A plugin folder's manifest, read and parsed as JSON (validated when registered). */
export async function readFolder(dir: string | URL, at?: string): Promise<{ source: { root: string; manifest: unknown }; file: string }> {
  const root = path.resolve(folderPath(dir, at));
  const file = path.join(root, MANIFEST_FILE);
  return { source: { root, manifest: await readManifest(root, file, dir) }, file };
}

/**
 * Why a missing plugin folder may not be where the host meant: a `\`, which separates no folders
 * outside Windows, or a relative path, which resolves from the working directory rather than
 * beside the host's module (`given` as the host gave it; a folder under the working directory may
 * have been given so: createExecutionBackend() resolves its paths when it is called). Empty when neither.
 */
function missingFolderHint(root: string, given: string | URL | undefined): string {
  if (path.sep === '/' && root.includes('\\')) return ` ("\\" separates no folders on ${process.platform}: write the path with "/")`;
  const unnamed = unnamedWorkingDirectory();
  if (unnamed && root.startsWith(unnamed)) return ` (${unnamedWorkingDirectoryProblem(unnamed)})`;
  const cwd = process.cwd();
  const relative = typeof given === 'string' && !given.startsWith('file:') && !path.isAbsolute(given);
  if (!relative && !root.startsWith(cwd + path.sep)) return '';
  const shown = relative ? (given as string) : `./${path.relative(cwd, root)}`;
  const beside = `new URL(${JSON.stringify(`${shown.replace(/\/+$/, '')}/`)}, import.meta.url)`;
  const which = relative ? `the relative path ${JSON.stringify(shown)} is` : 'a relative path is';
  return ` (${which} resolved from the working directory, ${cwd}, not from the host's module: ${beside}, or path.join(__dirname, ${JSON.stringify(shown)}) in CommonJS, names one beside it)`;
}

/**
 * A file's text, if it is a regular file: opened without waiting (a FIFO put there would hold the
 * read, and with it every execution waiting for the plugins to load), then looked at.
 */
async function readRegularFile(file: string): Promise<string> {
  const handle = await fs.promises.open(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  try {
    if (!(await handle.stat()).isFile()) {
      throw Object.assign(new Error('it is not a regular file (a folder, a FIFO, a device or a socket is never read)'), { code: 'ENOTREG' });
    }
    return utf8Text(await handle.readFile());
  } finally {
    await handle.close();
  }
}

/** The file's bytes as UTF-8 text; one in another encoding says so (decoded, its bytes would turn into U+FFFD without a word). */
function utf8Text(bytes: Buffer): string {
  if ((bytes[0] === 0xff && bytes[1] === 0xfe) || (bytes[0] === 0xfe && bytes[1] === 0xff)) {
    throw Object.assign(new Error('it is UTF-16 text; save it as UTF-8'), { code: 'ENOTUTF8' });
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    const lossy = bytes.toString('utf8');
    const at = Buffer.byteLength(lossy.slice(0, Math.max(lossy.indexOf('\ufffd'), 0)));
    throw Object.assign(new Error(`it is not UTF-8 text (byte 0x${bytes[at]!.toString(16).padStart(2, '0')} at offset ${at}); save it as UTF-8`), { code: 'ENOTUTF8' });
  }
}

/**
 * The JSON of a plugin folder's manifest file; ValidationError when it is missing, unreadable or
 * not JSON. `given`: the folder as the host gave it, for what a missing one may be (missingFolderHint).
 */
export async function readManifest(root: string, file: string, given?: string | URL): Promise<unknown> {
  let text: string;
  try {
    text = await readRegularFile(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const notFolder = code === 'ENOTDIR' ? `Plugin folder ${root} is a file; give the folder that holds its ${MANIFEST_FILE}${path.basename(root) === MANIFEST_FILE ? ` (${path.dirname(root)})` : ''}` : undefined;
    throw new ValidationError(
      notFolder ??
        (code !== 'ENOENT' ? `Cannot read ${file}: ${(error as Error).message}` : fs.existsSync(root) ? `No ${MANIFEST_FILE} in plugin folder ${root}` : `Plugin folder ${root} does not exist${missingFolderHint(root, given)}`),
      { details: { file, reason: code ?? 'unreadable' }, cause: error },
    );
  }
  // A byte-order mark (editors on Windows save one) is not JSON, but it is no mistake either.
  const json = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  let manifest: unknown;
  try {
    manifest = JSON.parse(json);
  } catch (error) {
    // The id it seems to claim, if any: that plugin's executions get this error, not "not registered".
    const claimed = /"id"\s*:\s*"([^"\\]{1,214})"/.exec(json)?.[1];
    throw new ValidationError(`${file} is not valid JSON: ${jsonSyntaxProblem(json, error)}`, { details: { file, ...(claimed ? { pluginId: claimed } : {}) } });
  }
  // JSON.parse keeps the last of two keys alike: two handlers of one name would lose the first unseen.
  const twice = duplicateJsonKeys(json);
  if (twice.length) {
    // With every other problem of the manifest, and its id: the plugin's executions get this error, not "not registered".
    const issues: ValidationIssue[] = twice.map((key) => ({ path: key, message: 'is given twice (JSON keeps only the last)' }));
    try {
      parseManifest(root, manifest, file);
    } catch (error) {
      const more = (error as ValidationError).details?.issues;
      if (Array.isArray(more)) issues.push(...more);
    }
    const claimed = (manifest as { id?: unknown } | null)?.id;
    throw validationError(`Invalid plugin manifest (${file})`, issues, { file, root, ...(typeof claimed === 'string' ? { pluginId: claimed } : {}) });
  }
  return manifest;
}

/** Validate a manifest: ValidationError naming the file (or the folder) and each problem's path. */
export function parseManifest(root: string, manifest: unknown, file: string | undefined): PluginManifest {
  const label = file ?? `manifest of plugin at ${root}`;
  const claimed = (manifest as { id?: unknown } | null)?.id;
  const claimedId = typeof claimed === 'string' ? { pluginId: claimed } : {};
  const details = { file: file ?? null, root, ...claimedId };
  // `{ root, manifest }` given the manifest's path, or its file's text unparsed: "(root): must be an object" would read as the `root` field's fault.
  if (file === undefined && typeof manifest === 'string') throw validationError(`Invalid plugin manifest (${label})`, [stringManifestIssue(root, manifest)], details);
  // JSON.parse makes "__proto__" an own key, which the schema's records pass over without a word.
  const reserved = protoKeys(manifest, 'manifest');
  if (reserved.length > 0) {
    const issues = reserved.map((at) => ({ path: at, message: at === 'handlers.__proto__' ? 'is not a handler id: it must start with a letter or digit' : 'is a reserved name' }));
    throw validationError(`Invalid plugin manifest (${label})`, issues, details);
  }
  const parsed = parseWith(pluginManifestSchema(), manifest, `Invalid plugin manifest (${label})`, '', details);
  const badEntries = entryProblems(root, parsed);
  if (badEntries.length > 0) throw validationError(`Invalid plugin manifest (${label})`, badEntries, details);
  return parsed;
}

/** The issue of a `{ root, manifest }` source whose manifest is a string: JSON text to parse, or (a path) the folder to give alone. */
function stringManifestIssue(root: string, manifest: string): ValidationIssue {
  const folder = `the plugin's folder alone (${JSON.stringify(root)}) in place of { root, manifest }, and its ${MANIFEST_FILE} is read`;
  if (manifest.trimStart().startsWith('{')) return { path: 'manifest', message: `is JSON text, not a manifest object: give JSON.parse() of it, or ${folder}` };
  const shown = manifest.length > 200 ? `${manifest.slice(0, 200)}…` : manifest;
  return { path: 'manifest', message: `is a string (${JSON.stringify(shown)}), not a manifest object: give ${folder}` };
}

/**
 * Entries that lead out of the plugin folder through a symbolic link (the manifest's paths stay
 * inside it, and so must the files they name: an OS sandbox shows a child only the plugin's
 * folder), and entries that are no module file (a folder, a FIFO, a device: notModuleFile). An entry that does not exist yet is
 * left to the execution to report.
 */
function entryProblems(root: string, manifest: PluginManifest): ValidationIssue[] {
  let realRoot: string;
  try {
    realRoot = fs.realpathSync(root);
  } catch {
    return [];
  }
  const issues: ValidationIssue[] = [];
  // Real path → the first declared write folder there; an entry is looked up by its folders, not
  // compared with each (handlers × write folders held the event loop for minutes at 100,000 handlers).
  const writeFolders = new Map<string, string>();
  for (const declared of new Set(declaredWriteFolders(manifest))) {
    const real = realOrAsIs(path.resolve(realRoot, declared));
    if (!writeFolders.has(real)) writeFolders.set(real, declared);
  }
  const writtenAt = (real: string): { declared: string } | undefined => {
    // Not the file system's root: a write folder that leads there (`out` → `/`) is left to the backends, as before.
    for (let at = real; path.dirname(at) !== at; at = path.dirname(at)) {
      const declared = writeFolders.get(at);
      if (declared !== undefined) return { declared };
    }
    return undefined;
  };
  for (const [handlerId, spec] of Object.entries(manifest.handlers)) {
    let real: string;
    try {
      real = fs.realpathSync(path.resolve(root, spec.entry));
    } catch {
      continue;
    }
    const relative = path.relative(realRoot, real);
    const written = writtenAt(real);
    if (relative === '..' || relative.startsWith(`..${path.sep}`) || path.isAbsolute(relative)) {
      issues.push({ path: `handlers.${handlerId}.entry`, message: `${spec.entry} is a link to ${real}, outside the plugin folder; copy the file into the folder` });
    } else if (written) {
      const message = `${spec.entry} leads into the declared fs.write folder "${written.declared}" (through a link): a handler that writes it could rewrite this code; keep code out of write folders`;
      issues.push({ path: `handlers.${handlerId}.entry`, message });
    } else {
      const problem = notModuleFile(spec.entry, fs.statSync(real, { throwIfNoEntry: false }));
      if (problem) issues.push({ path: `handlers.${handlerId}.entry`, message: problem });
    }
  }
  return issues;
}

/** `p`'s real path, or `p` when it does not exist (yet). */
function realOrAsIs(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch {
    return p;
  }
}

/**
 * A plugin folder's path from a path or a `file:` URL (string or URL); `at` is where the caller
 * gave it (`plugins[2]`), for the error's `details.path` (none for registerPlugin's argument).
 */
export function folderPath(dir: string | URL, at?: string): string {
  const details = at === undefined ? {} : { path: at };
  if (dir instanceof URL || (typeof dir === 'string' && dir.startsWith('file:'))) {
    try {
      return fileURLToPath(dir);
    } catch (error) {
      throw new ValidationError(`Plugin folder ${String(dir)} is not a usable file: URL: ${(error as Error).message}`, { details, cause: error });
    }
  }
  if (typeof dir !== 'string' || dir.length === 0) {
    throw new ValidationError('Plugin folder must be a non-empty path string or a file: URL', { details });
  }
  return dir;
}

/** Where in parsed JSON an own "__proto__" key is (`handlers.__proto__`, `permissions.platform.__proto__`). */
function protoKeys(value: unknown, at: string, depth = 0): string[] {
  if (typeof value !== 'object' || value === null || depth > 16) return [];
  const here = at === 'manifest' ? '' : at;
  const found = !Array.isArray(value) && Object.hasOwn(value, '__proto__') ? [here ? `${here}.__proto__` : '__proto__'] : [];
  for (const [key, inner] of Object.entries(value)) {
    const path = Array.isArray(value) ? `${here}[${key}]` : here ? `${here}.${key}` : key;
    found.push(...protoKeys(inner, path, depth + 1));
  }
  return found;
}

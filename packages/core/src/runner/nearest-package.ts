// Node's built-ins by getBuiltinModule, as in handler-loader.ts: no ES facade built at start-up.
const { readFileSync } = process.getBuiltinModule('node:fs');
const path = process.getBuiltinModule('node:path');
const { fileURLToPath } = process.getBuiltinModule('node:url');

/**
 * What to do about an ES module file Node loads as CommonJS, naming the package.json in the plugin
 * folder that decides it, if there is one. Looked for no higher than the plugin folder: a sandbox
 * shows nothing above it, and every backend says the same. Read only on that error's path.
 */
export function moduleTypeAdvice(file: string, pluginRoot: string): string {
  const filePath = localPath(file);
  // TypeScript (run by Node's type stripping) has its own names: .mts is an ES module, .cts CommonJS.
  const typeScript = /\.[cm]?ts$/.test(filePath);
  const esName = typeScript ? '.mts' : '.mjs';
  if (filePath.endsWith('.cjs') || filePath.endsWith('.cts')) {
    return `A ${path.extname(filePath)} file is CommonJS whatever a package.json says: rename it to ${esName}, or write it with require() and module.exports`;
  }
  const found = nearestPackageJson(filePath, pluginRoot);
  if (!found) return `Rename it to ${esName}, or put a package.json with "type": "module" in the plugin folder (it has none: Node goes by the nearest one above it, if any)`;
  const says = found.type === undefined ? 'no "type"' : `"type": ${JSON.stringify(found.type)}`;
  return `Rename it to ${esName}, or make "type" "module" in ${found.path}, the package.json nearest to it (it says ${says})`;
}

/** What to do about a CommonJS file (module.exports, require) Node loads as an ES module: moduleTypeAdvice the other way round. */
export function commonJsAdvice(file: string, pluginRoot: string): string {
  const filePath = localPath(file);
  const cjsName = /\.[cm]?ts$/.test(filePath) ? '.cts' : '.cjs';
  if (/\.m[jt]s$/.test(filePath)) return `A ${path.extname(filePath)} file is an ES module whatever a package.json says: rename it to ${cjsName}, or write it with import and export`;
  const found = nearestPackageJson(filePath, pluginRoot);
  const why = found ? `${found.path}, the package.json nearest to it, says "type": ${JSON.stringify(found.type)}` : 'Node took it for one';
  return `Rename it to ${cjsName}, or write it with import and export (${why})`;
}

/**
 * Whether Node may have loaded `file` as CommonJS: not a .mjs or .mts, nor a file a package.json
 * in the plugin folder makes an ES module. (A module file cut short in its save fails with the
 * same "Unexpected token 'export'" a CommonJS one with `export` does.)
 */
export function mayLoadAsCommonJs(file: string, pluginRoot: string): boolean {
  const filePath = localPath(file);
  if (/\.m[jt]s$/.test(filePath)) return false;
  if (/\.c[jt]s$/.test(filePath)) return true;
  return nearestPackageJson(filePath, pluginRoot)?.type !== 'module';
}

/** A module's path, given as one or as a file: URL. */
function localPath(file: string): string {
  return file.startsWith('file:') ? fileURLToPath(file) : file;
}

function nearestPackageJson(file: string, pluginRoot: string): { path: string; type: unknown } | undefined {
  const root = path.resolve(pluginRoot);
  const inPlugin = (dir: string) => dir === root || dir.startsWith(root.endsWith(path.sep) ? root : root + path.sep);
  for (let dir = path.dirname(file), above = ''; inPlugin(dir) && dir !== above; above = dir, dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'package.json');
    let text: string;
    try {
      text = readFileSync(candidate, 'utf8');
    } catch {
      continue;
    }
    let type: unknown;
    try {
      type = (JSON.parse(text) as { type?: unknown } | null)?.type;
    } catch {
      type = undefined;
    }
    return { path: candidate, type };
  }
  return undefined;
}

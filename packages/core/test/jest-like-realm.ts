import { readFileSync, realpathSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import vm from 'node:vm';

const packageDir = path.dirname(realpathSync(createRequire(import.meta.url).resolve('@kb-labs/plugin-execution-core/package.json')));

/**
 * An entry of core's CommonJS build loaded as Jest loads a test file's packages: compiled in a vm
 * context of its own, whose JavaScript built-ins (Error, Map, Promise …) are that context's, given
 * Node's own globals (structuredClone, Buffer, process …) as they are. So what Node makes there
 * (structuredClone's copies and errors, a thread's messages) is of another realm than the code
 * that reads it, as under Jest. Other packages (zod) are Node's require, as they would be anywhere.
 */
export function loadInJestLikeRealm<T>(specifier: string): T {
  const context = vm.createContext();
  const own = new Set(vm.runInContext('Object.getOwnPropertyNames(globalThis)', context) as string[]);
  for (const name of Object.getOwnPropertyNames(globalThis)) {
    if (!own.has(name)) Object.defineProperty(context, name, Object.getOwnPropertyDescriptor(globalThis, name)!);
  }
  const modules = new Map<string, { exports: unknown }>();
  const load = (file: string): unknown => {
    const known = modules.get(file);
    if (known) return known.exports;
    const module = { exports: {} };
    modules.set(file, module);
    const nodeRequire = createRequire(file);
    const require = (id: string): unknown => {
      const resolved = nodeRequire.resolve(id);
      const real = path.isAbsolute(resolved) ? realpathSync(resolved) : resolved;
      return real.startsWith(`${packageDir}${path.sep}`) ? load(real) : nodeRequire(id);
    };
    const source = `(function (exports, require, module, __filename, __dirname) {${readFileSync(file, 'utf8')}\n})`;
    const wrapper = new vm.Script(source, { filename: file }).runInContext(context) as (...args: unknown[]) => void;
    wrapper(module.exports, Object.assign(require, { resolve: nodeRequire.resolve }), module, file, path.dirname(file));
    return module.exports;
  };
  return load(realpathSync(createRequire(path.join(packageDir, 'package.json')).resolve(specifier))) as T;
}

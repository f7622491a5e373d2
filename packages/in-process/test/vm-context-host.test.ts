import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runHostScript } from './node-host.js';

// Jest runs a test file, and the packages it requires, as scripts compiled in a vm context of its
// own: an import() there fails unless Node runs with --experimental-vm-modules. The host script
// below loads this package's and core's CommonJS builds the way Jest does (vm.Script, with an
// importModuleDynamically callback), in a plain Node process without that flag.
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'kb-in-process-vm-host-'));
  await writeFile(path.join(dir, 'kb.plugin.json'), JSON.stringify({ id: '@x/vm-host', version: '1', handlers: { run: { entry: 'run.cjs' } } }));
  await writeFile(path.join(dir, 'run.cjs'), "module.exports = async () => 'ran';\n");
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const script = (pluginDir: string): string => `
  import { createRequire } from 'node:module';
  import fs from 'node:fs';
  import path from 'node:path';
  import vm from 'node:vm';
  const nodeRequire = createRequire(import.meta.url);
  const packageDirs = ['@kb-labs/plugin-execution-in-process', '@kb-labs/plugin-execution-core'].map((name) => path.dirname(fs.realpathSync(nodeRequire.resolve(name + '/package.json'))));
  const modules = new Map();
  function load(file) {
    if (modules.has(file)) return modules.get(file).exports;
    const module = { exports: {} };
    modules.set(file, module);
    const nodeRequireHere = createRequire(file);
    const require = (id) => {
      const resolved = nodeRequireHere.resolve(id);
      const real = path.isAbsolute(resolved) ? fs.realpathSync(resolved) : resolved;
      return packageDirs.some((dir) => real.startsWith(dir + path.sep)) ? load(real) : nodeRequireHere(id);
    };
    require.resolve = nodeRequireHere.resolve;
    const source = '(function (exports, require, module, __filename, __dirname) {' + fs.readFileSync(file, 'utf8') + '\\n})';
    const compiled = new vm.Script(source, { filename: file, importModuleDynamically: () => { throw new Error('not called without --experimental-vm-modules'); } });
    compiled.runInThisContext()(module.exports, require, module, file, path.dirname(file));
    return module.exports;
  }
  const { InProcessBackend } = load(fs.realpathSync(nodeRequire.resolve('@kb-labs/plugin-execution-in-process')));
  const backend = new InProcessBackend({ plugins: [${JSON.stringify(pluginDir)}], workspace: false });
  const result = await backend.execute({ pluginId: '@x/vm-host', handlerId: 'run' });
  await backend.shutdown();
  console.log(JSON.stringify(result.ok ? { data: result.data } : { code: result.error.code, message: result.error.message, details: result.error.details, cause: result.error.cause?.code }));`;

describe('an in-process host whose code runs in a vm context that imports no modules (Jest without --experimental-vm-modules)', () => {
  it('fails the handler saying so, with the flag and the backends that import it elsewhere, not with Node\'s bare "dynamic import callback" error', () => {
    const result = runHostScript(script(dir));
    expect(result.stderr).toBe('');
    const outcome = JSON.parse(result.stdout.trim()) as { code: string; message: string; details: unknown; cause: unknown };
    expect(outcome.code).toBe('HANDLER_ERROR');
    expect(outcome.cause).toBe('ERR_VM_DYNAMIC_IMPORT_CALLBACK_MISSING_FLAG');
    expect(outcome.message).toContain(`Handler "run" of plugin "@x/vm-host": ${path.join(dir, 'run.cjs')} could not be imported: the host's code runs in a vm context`);
    expect(outcome.message).toContain('NODE_OPTIONS=--experimental-vm-modules');
    expect(outcome.message).toContain('worker-pool or subprocess backend');
    expect(outcome.details).toEqual({ name: 'TypeError', file: path.join(dir, 'run.cjs') });
  });
});

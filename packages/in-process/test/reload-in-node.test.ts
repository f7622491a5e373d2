import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runHostScript } from './node-host.js';

// In a plain Node process, as a host runs it: inside vitest, vitest's module runner loads the
// handler modules (the conformance suite's reload tests pass there too), not Node's loader, whose
// module cache is what reloading has to get past.
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'kb-in-process-reload-'));
  const handlers = { esm: { entry: 'esm.mjs' }, cjs: { entry: 'cjs.cjs' } };
  await writeFile(path.join(dir, 'kb.plugin.json'), JSON.stringify({ id: '@x/reload', version: '1', handlers }));
  await writeFile(path.join(dir, 'esm.mjs'), "import { DEP } from './dep.mjs';\nexport default async () => ({ entry: 'v1', dep: DEP });\n");
  await writeFile(path.join(dir, 'dep.mjs'), "export const DEP = 'v1';\n");
  await writeFile(
    path.join(dir, 'cjs.cjs'),
    "const { DEP } = require('./dep.cjs');\nconst { PKG } = require('kb-reload-pkg');\nmodule.exports = async () => ({ entry: 'v1', dep: DEP, pkg: PKG });\n",
  );
  await writeFile(path.join(dir, 'dep.cjs'), "module.exports = { DEP: 'v1' };\n");
  // A dependency installed in the plugin's own node_modules.
  await mkdir(path.join(dir, 'node_modules', 'kb-reload-pkg'), { recursive: true });
  await writeFile(path.join(dir, 'node_modules', 'kb-reload-pkg', 'package.json'), JSON.stringify({ name: 'kb-reload-pkg', main: 'index.cjs' }));
  await writeFile(path.join(dir, 'node_modules', 'kb-reload-pkg', 'index.cjs'), "module.exports = { PKG: 'v1' };\n");
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('in-process reload, in a plain Node process', () => {
  it('loads a fresh instance of an ES module handler, and every CommonJS module of the plugin anew, not those of its node_modules', () => {
    const script = `
      import { readFileSync, writeFileSync } from 'node:fs';
      import path from 'node:path';
      import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';
      const dir = ${JSON.stringify(dir)};
      const bump = (file) => writeFileSync(path.join(dir, file), readFileSync(path.join(dir, file), 'utf8').replace("'v1'", "'v2'"));
      const backend = new InProcessBackend({ plugins: [dir], workspace: false });
      const run = async (handlerId) => { const r = await backend.execute({ pluginId: '@x/reload', handlerId }); return r.ok ? r.data : r.error.code; };
      const before = { esm: await run('esm'), cjs: await run('cjs') };
      for (const file of ['esm.mjs', 'dep.mjs', 'cjs.cjs', 'dep.cjs', 'node_modules/kb-reload-pkg/index.cjs']) bump(file);
      const unreloaded = { esm: await run('esm'), cjs: await run('cjs') };
      const plugin = await backend.reloadPlugin('@x/reload');
      const after = { esm: await run('esm'), cjs: await run('cjs') };
      await backend.shutdown();
      console.log(JSON.stringify({ before, unreloaded, generation: plugin.generation, after }));`;
    const result = runHostScript(script);
    expect(result.stderr).toBe('');
    const v1 = { entry: 'v1', dep: 'v1' };
    const cjsV1 = { ...v1, pkg: 'v1' };
    expect(JSON.parse(result.stdout.trim())).toEqual({
      before: { esm: v1, cjs: cjsV1 },
      // Node's module cache: without a reload the host keeps running what it loaded.
      unreloaded: { esm: v1, cjs: cjsV1 },
      generation: 1,
      after: {
        // A fresh instance of the handler's ES module; the ES modules it imports stay cached by
        // Node (docs/plugins.md: in-process reloads the entry module only, for ES modules).
        esm: { entry: 'v2', dep: 'v1' },
        // The plugin's own CommonJS modules are dropped from the require cache: all of them load
        // anew; its node_modules are kept, with their state (docs/plugins.md, "not its node_modules").
        cjs: { entry: 'v2', dep: 'v2', pkg: 'v1' },
      },
    });
  });
});

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runHostScript } from './node-host.js';

// A host may have both builds of core loaded (an ES host whose dependency require()s a backend):
// Node's module cache is the process's, so the loads of plugin code must be counted once for the
// process too, or a backend of the other build imports a plugin's code under a URL the first one
// has already imported an older version of the code from. In a plain Node process, as in
// reload-in-node.test.ts: vitest's module runner would load the handler modules otherwise.
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'kb-in-process-two-builds-'));
  await writeFile(path.join(dir, 'kb.plugin.json'), JSON.stringify({ id: '@x/two-builds', version: '1', handlers: { run: { entry: 'run.mjs' } } }));
  await writeFile(path.join(dir, 'run.mjs'), "export default async () => 'v1';\n");
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('in-process backends of both builds in one process', () => {
  it("a backend of the other build made after the plugin's code changed runs the new code, as one of the same build does", () => {
    const script = `
      import { writeFileSync } from 'node:fs';
      import { createRequire } from 'node:module';
      import path from 'node:path';
      import { InProcessBackend as EsBackend } from '@kb-labs/plugin-execution-in-process';
      const { InProcessBackend: CjsBackend } = createRequire(import.meta.url)('@kb-labs/plugin-execution-in-process');
      const dir = ${JSON.stringify(dir)};
      const run = async (backend) => { const r = await backend.execute({ pluginId: '@x/two-builds', handlerId: 'run' }); return r.ok ? r.data : r.error.code; };
      const first = new EsBackend({ plugins: [dir], workspace: false });
      const before = await run(first);
      writeFileSync(path.join(dir, 'run.mjs'), "export default async () => 'v2';\\n");
      const cjs = new CjsBackend({ plugins: [dir], workspace: false });
      const es = new EsBackend({ plugins: [dir], workspace: false });
      const after = { cjs: await run(cjs), es: await run(es), first: await run(first) };
      await Promise.all([first.shutdown(), cjs.shutdown(), es.shutdown()]);
      console.log(JSON.stringify({ before, after }));`;
    const result = runHostScript(script);
    expect(result.stderr).toBe('');
    // The first backend keeps the load it registered (Node's module cache); the new ones, of
    // either build, load the code as it is now.
    expect(JSON.parse(result.stdout.trim())).toEqual({ before: 'v1', after: { cjs: 'v2', es: 'v2', first: 'v1' } });
  });
});

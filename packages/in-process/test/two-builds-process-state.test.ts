import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runHostScript } from './node-host.js';

// A host may have both builds of core loaded (an ES host whose dependency require()s a backend).
// What is bounded or said "per process" must stay so: one allowance of held call arguments per
// plugin (MAX_HELD_CALL_BYTES), one warning per failing callback. In a plain Node process that
// loads both builds as a host would, as in reload-in-node.test.ts.
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'kb-in-process-two-builds-state-'));
  const handlers = { hold: { entry: 'hold.mjs' }, log: { entry: 'log.mjs' } };
  await writeFile(path.join(dir, 'kb.plugin.json'), JSON.stringify({ id: '@x/two-builds-state', version: '1', permissions: { platform: { slow: true } }, handlers }));
  // 40 MiB of arguments held by a service that answers when told: two such calls are over 64 MiB.
  await writeFile(
    path.join(dir, 'hold.mjs'),
    "export default async (input, ctx) => { try { await ctx.platform.slow.wait('h'.repeat(40 * 1024 * 1024)); return 'held'; } catch (error) { return error.code; } };\n",
  );
  await writeFile(path.join(dir, 'log.mjs'), "export default async (input, ctx) => { ctx.log.info('hi'); return 'logged'; };\n");
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('in-process backends of both builds in one process', () => {
  it("share the plugin's allowance of held call arguments and the once-per-process warnings", () => {
    const script = `
      import { createRequire } from 'node:module';
      import { InProcessBackend as EsBackend } from '@kb-labs/plugin-execution-in-process';
      const { InProcessBackend: CjsBackend } = createRequire(import.meta.url)('@kb-labs/plugin-execution-in-process');
      const warnings = [];
      process.on('warning', (warning) => warnings.push(warning.code));
      const answers = [];
      let called = () => {};
      const nextCall = () => new Promise((resolve) => { called = resolve; });
      const platform = { slow: { wait: () => new Promise((resolve) => { answers.push(resolve); called(); }) } };
      const options = { plugins: [${JSON.stringify(dir)}], workspace: false, platform, permissions: { platform: { slow: true } } };
      const es = new EsBackend(options);
      const cjs = new CjsBackend(options);
      const request = { pluginId: '@x/two-builds-state', handlerId: 'hold' };
      const firstCalled = nextCall();
      const first = es.execute(request);
      await firstCalled;
      // Refused at once, or held in the host too: then its call is answered with the first one's.
      const secondCalled = nextCall();
      const second = cjs.execute(request);
      await Promise.race([second, secondCalled]);
      for (const answer of answers) answer();
      const data = (r) => (r.ok ? r.data : r.error.code);
      const held = { first: data(await first), second: data(await second) };
      const onStart = () => { throw new Error('sink down'); };
      for (const backend of [es, cjs]) await backend.execute({ pluginId: '@x/two-builds-state', handlerId: 'log' }, { onStart });
      await new Promise((resolve) => setImmediate(resolve));
      await Promise.all([es.shutdown(), cjs.shutdown()]);
      console.log(JSON.stringify({ held, callbackWarnings: warnings.filter((code) => code === 'KB_PLUGIN_CALLBACK_FAILED').length }));`;
    const result = runHostScript(script);
    expect(result.stderr).toBe('');
    expect(JSON.parse(result.stdout.trim())).toEqual({ held: { first: 'held', second: 'QUEUE_FULL' }, callbackWarnings: 1 });
  });
});

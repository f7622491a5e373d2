import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { ExecuteOptions } from '@kb-labs/plugin-execution-core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { expectError, expectOk } from '../expect-result.js';
import { BASIC } from '../fixtures.js';
import type { SuiteContext } from '../suite-context.js';

const PLUGIN = '@x/begin-by';
/** A handler that begins (an event), then, past `input.at`, writes `may-begin` to a child's channel as its runtime would (subprocess's framing). */
const FORGE = `import { writeSync } from 'node:fs';
import v8 from 'node:v8';
export default async (input, ctx) => {
  ctx.emit({ begun: true });
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, input.at - Date.now()) + 50));
  if (input.channel) {
    const payload = v8.serialize({ type: 'may-begin' });
    const header = Buffer.from([0x4b, 0x42, 1, 0, 0, 0, 0, 0]);
    header.writeUInt32BE(payload.length, 4);
    header[3] = (header[0] ^ header[1] ^ header[2] ^ header[4] ^ header[5] ^ header[6] ^ header[7] ^ 0xa5) & 0xff;
    writeSync(3, Buffer.concat([header, payload]));
  }
  await new Promise((resolve) => setTimeout(resolve, 300));
  return 'ran';
};
`;
/** How long the `slow` handler's module takes to load (a top-level await). */
const LOAD_MS = 300;

/**
 * `ExecuteOptions.beginBy`: a handler whose runner was not ready to begin by then (a long load,
 * its process stopped meanwhile) begins only if the option, asked again, says it still may.
 */
export function describeBeginBy(suite: SuiteContext): void {
  describe('beginBy (the latest time a handler may begin)', () => {
    it('is refused unless it is a function', async () => {
      const backend = suite.make();
      const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo' }, { beginBy: Date.now() + 1000 } as unknown as ExecuteOptions);
      expectError(result, 'VALIDATION_ERROR');
      expect(result.error.message).toMatch(/beginBy/);
    });

    if (suite.capabilities.remoteRunners) {
      it("is refused by a backend whose runners are other machines (their clocks are not the host's)", async () => {
        const result = await suite.make().execute({ pluginId: BASIC, handlerId: 'echo' }, { beginBy: () => Date.now() + 60_000 });
        expectError(result, 'VALIDATION_ERROR');
        expect(result.error.message).toMatch(/beginBy.*other machines/);
      });
      return;
    }
    localRunnerTests(suite);
  });
}

function localRunnerTests(suite: SuiteContext): void {
  let dir: string;
  let out: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'kb-begin-by-'));
    out = path.join(dir, 'out');
    await mkdir(out);
    // Each handler leaves a file named by its input when it begins.
    const begin = `(input) => { writeFileSync(${JSON.stringify(out)} + '/' + input, ''); return input; }`;
    await writeFile(path.join(dir, 'quick.mjs'), `import { writeFileSync } from 'node:fs';\nexport default ${begin};\n`);
    const slow = `import { writeFileSync } from 'node:fs';\nawait new Promise((resolve) => setTimeout(resolve, ${LOAD_MS}));\nexport default ${begin};\n`;
    await writeFile(path.join(dir, 'slow.mjs'), slow);
    await writeFile(path.join(dir, 'slow-too.mjs'), slow);
    await writeFile(path.join(dir, 'forge.mjs'), FORGE);
    const handlers = { quick: { entry: './quick.mjs' }, slow: { entry: './slow.mjs' }, 'slow-too': { entry: './slow-too.mjs' }, forge: { entry: './forge.mjs' } };
    const manifest = { id: PLUGIN, version: '1.0.0', permissions: { fs: { write: ['out'] } }, handlers };
    await writeFile(path.join(dir, 'kb.plugin.json'), JSON.stringify(manifest));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const make = () => suite.make({ plugins: [dir], permissions: { fs: { write: ['out'] } } });
  const begun = async () => (await readdir(out)).sort();

  it('a handler whose time to begin by has passed is not begun: ABORTED, whether its module was loaded before or not', async () => {
    const backend = make();
    const past = () => Date.now() - 1;
    const cold = await backend.execute({ pluginId: PLUGIN, handlerId: 'quick', input: 'cold' }, { beginBy: past });
    expectError(cold, 'ABORTED');
    expect(cold.error.message).toMatch(/was stopped: its runner was ready to begin it \d+ ms after the time execute\(\) option beginBy gave/);
    expect(cold.error.details).toMatchObject({ phase: 'running' });
    expectOk(await backend.execute({ pluginId: PLUGIN, handlerId: 'quick', input: 'warm-up' }));
    expectError(await backend.execute({ pluginId: PLUGIN, handlerId: 'quick', input: 'warm' }, { beginBy: past }), 'ABORTED');
    expect(await begun()).toEqual(['warm-up']);
    // Nothing is held: the backend runs the next one.
    expectOk(await backend.execute({ pluginId: PLUGIN, handlerId: 'quick', input: 'after' }, { beginBy: () => Date.now() + 60_000 }));
    expect(await begun()).toEqual(['after', 'warm-up']);
  });

  it('a load that outlasts it is asked about again: the handler begins if the answer is later, and not if it is past', async () => {
    const backend = make();
    let asked = 0;
    // The first answer passes while the module loads; the second, asked then, is a minute ahead.
    const extended = await backend.execute({ pluginId: PLUGIN, handlerId: 'slow', input: 'extended' }, { beginBy: () => Date.now() + (asked++ === 0 ? 50 : 60_000) });
    expectOk(extended);
    expect(asked).toBe(2);
    expect(await begun()).toEqual(['extended']);
    const by = Date.now() + 50;
    expectError(await backend.execute({ pluginId: PLUGIN, handlerId: 'slow-too', input: 'fixed' }, { beginBy: () => by }), 'ABORTED');
    expect(await begun()).toEqual(['extended']);
  });

  it("a begun handler that asks to begin itself, once the time has passed, is not stopped as one that had not begun", async () => {
    const backend = make();
    // A minute ahead when its task is made (the handler begins however slow its runner is that
    // time), past when asked again: a forged question the host answered would stop it.
    let asked = 0;
    const beginBy = () => (asked++ === 0 ? Date.now() + 60_000 : Date.now() - 1);
    // A child's handler can write the runtime's question to its channel (fd 3); a thread's has no way to its channel, and in-process there is none.
    const result = await backend.execute({ pluginId: PLUGIN, handlerId: 'forge', input: { at: 0, channel: suite.capabilities.channelOnFd3 === true } }, { beginBy });
    expectOk(result);
    expect(result.data).toBe('ran');
    expect(asked).toBe(1);
  });

  it('one that gives no number (an async function) is refused naming it, and the handler is not begun', async () => {
    const result = await make().execute({ pluginId: PLUGIN, handlerId: 'quick', input: 'promised' }, { beginBy: (async () => Date.now() + 60_000) as unknown as () => number });
    expectError(result, 'VALIDATION_ERROR');
    expect(result.error.message).toMatch(/beginBy must return a number .*returned a promise/);
    expect(existsSync(path.join(out, 'promised'))).toBe(false);
  });

  it('one that gives a value whose every read throws (a revoked Proxy) is refused naming it, at once: the handler is not begun', async () => {
    const { proxy, revoke } = Proxy.revocable({}, {});
    revoke();
    const result = await make().execute({ pluginId: PLUGIN, handlerId: 'quick', input: 'unreadable' }, { timeoutMs: 20_000, beginBy: (() => proxy) as unknown as () => number });
    expectError(result, 'VALIDATION_ERROR');
    expect(result.error.message).toMatch(/beginBy must return a number .*returned object/);
    expect(existsSync(path.join(out, 'unreadable'))).toBe(false);
  });

  it('one that throws is a host failure: INTERNAL_ERROR, and the handler is not begun', async () => {
    const backend = make();
    const result = await backend.execute({ pluginId: PLUGIN, handlerId: 'quick', input: 'thrown' }, {
      beginBy: () => {
        throw new Error('no clock');
      },
    });
    expectError(result, 'INTERNAL_ERROR');
    // Says what it threw, and has the `where` and `what` every INTERNAL_ERROR has (docs/errors.md).
    expect(result.error.message).toBe(`Handler "quick" of plugin "${PLUGIN}" was not begun: its execute() option beginBy threw (no clock)`);
    expect(result.error.details).toEqual({ where: 'beginBy', what: 'no clock' });
    expect(existsSync(path.join(out, 'thrown'))).toBe(false);
  });
}

import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expectError, expectOk } from '@kb-labs/plugin-execution-conformance';
import { SubprocessBackend } from '@kb-labs/plugin-execution-subprocess';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { passableByOthers, probePlugin } from './helpers.js';

/** As in sandbox.test.ts: on a root host whose checkout others can pass, sandboxed children run as uid 65534. */
const dropsToNobody = process.getuid?.() === 0 && passableByOthers(probePlugin) && passableByOthers(path.join(os.tmpdir(), 'x'));
const TEN_MINUTES = 10 * 60_000;
let scratch: string;

describe('the sandbox user check under a host wall clock that steps', () => {
  beforeAll(async () => {
    scratch = await mkdtemp(path.join(os.tmpdir(), 'kb-sandbox-clock-'));
    await chmod(scratch, 0o755);
  });
  afterAll(async () => {
    await rm(scratch, { recursive: true, force: true });
  });

  it.runIf(dropsToNobody)('a folder made readable for the sandbox user is used a second later, though the clock stepped 10 minutes back meanwhile', async () => {
    const plugin = await mkdtemp(path.join(scratch, 'closed-plugin-'));
    await chmod(plugin, 0o755);
    await writeFile(path.join(plugin, 'handler.mjs'), "export default () => 'read';\n");
    await writeFile(path.join(plugin, 'kb.plugin.json'), JSON.stringify({ id: '@sandbox-test/closed', version: '1.0.0', handlers: { run: { entry: './handler.mjs', permissions: { fs: { read: ['closed'] } } } } }));
    await mkdir(path.join(plugin, 'closed'), { mode: 0o700 });
    await using backend = new SubprocessBackend({ sandbox: 'required', plugins: [plugin], permissions: { fs: { read: ['closed'] } }, workspace: false });
    expectError(await backend.execute({ pluginId: '@sandbox-test/closed', handlerId: 'run' }), 'PERMISSION_DENIED');
    // The host's wall clock steps back (an NTP step, `date -s`): this process's own view of it.
    const realNow = Date.now;
    Date.now = () => realNow() - TEN_MINUTES;
    try {
      await chmod(path.join(plugin, 'closed'), 0o755);
      // Past the check's one-second memory of each folder's answer.
      await new Promise((resolve) => setTimeout(resolve, 1500));
      // Before, the answer kept from before the step was used until the clock caught up, 10 minutes on:
      // PERMISSION_DENIED, "…/closed is not readable by uid 65534: a path inside the plugin folder that the sandbox user cannot use".
      expectOk(await backend.execute({ pluginId: '@sandbox-test/closed', handlerId: 'run' }));
    } finally {
      Date.now = realNow;
    }
  });
});

/**
 * A shutdown that waited for an execution still running leaves no timer of its deadline behind:
 * once the execution and the shutdown are over, the host's process ends on its own, however long
 * the shutdown's `timeoutMs` was. Each host is a Node process of its own, started on core's built
 * backend kit.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runHostProgram, TINY_BACKEND_SOURCE } from './tiny-backend-source.js';

/** A host that shuts down while its one execution runs, with a deadline far longer than the test, and `listener` registered as an onShutdown hook (or none). */
const host = (pluginDir: string, listener: boolean) => `
import * as kit from '@kb-labs/plugin-execution-core/backend-kit';
${TINY_BACKEND_SOURCE}
const backend = new TinyBackend({ plugins: [${JSON.stringify(pluginDir)}], workspace: false });
if (${listener}) backend.onShutdown(() => new Promise((resolve) => setTimeout(resolve, 100)));
const running = backend.execute({ pluginId: '@test/slow', handlerId: 'run', input: 1 });
await new Promise((resolve) => setTimeout(resolve, 100));
await backend.shutdown({ timeoutMs: 600_000 });
const result = await running;
console.log(JSON.stringify({ ok: result.ok }));
`;

let tmp: string;

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'kb-shutdown-timer-'));
  await writeFile(path.join(tmp, 'kb.plugin.json'), JSON.stringify({ id: '@test/slow', version: '1.0.0', handlers: { run: { entry: 'run.mjs' } } }));
  await writeFile(path.join(tmp, 'run.mjs'), 'export default async (input) => { await new Promise((resolve) => setTimeout(resolve, 300)); return input; };\n');
});

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('shutdown deadline', () => {
  it.each([['no hook', false], ['an onShutdown hook', true]] as const)(
    'with %s: once the running execution ended and shutdown() resolved, the host process exits on its own (no 10-minute deadline timer keeps it)',
    async (_label, listener) => {
      // Before: the deadline's timer stayed armed after the wait ended, and the process lived on until it fired (killed at 20 s).
      expect(await runHostProgram(`shutdown-timer-${listener}`, host(tmp, listener))).toEqual({ ok: true });
    },
    30_000,
  );
});

import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { expectError, expectOk } from '@kb-labs/plugin-execution-conformance';
import { SubprocessBackend } from '@kb-labs/plugin-execution-subprocess';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PROBE, probePlugin } from './helpers.js';

// SIGUSR1 opens a Node process's inspector, and a debugger connected to it runs code there. An
// unsandboxed child shares its host's pids and network: one SIGUSR1 to process.ppid, then the
// host's inspector on 127.0.0.1:9229, reached with fetch and WebSocket, read a host file for a
// handler with no permissions (Node 22 and 24). This process listens for SIGUSR1 itself, which
// counts what arrives and keeps its own inspector shut even if a signal gets through.
let root: string;
let received = 0;
const count = (): void => void received++;
const backends: SubprocessBackend[] = [];

function make(): SubprocessBackend {
  const backend = new SubprocessBackend({ plugins: [probePlugin], workspace: { root }, sandbox: 'off' });
  backends.push(backend);
  return backend;
}

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'kb-inspector-signal-'));
  process.on('SIGUSR1', count);
});

afterEach(async () => {
  await Promise.all(backends.splice(0).map((b) => b.shutdown({ timeoutMs: 2000 })));
  expect(await readdir(root)).toEqual([]);
});

afterAll(async () => {
  process.off('SIGUSR1', count);
  await rm(root, { recursive: true, force: true });
});

describe("SIGUSR1 from a child under the permission model (it opens a Node process's inspector)", () => {
  it.each(['kill', 'debugProcess'])('sent to the host through process.%s is PERMISSION_DENIED and never arrives', async (how) => {
    received = 0;
    const result = await make().execute({ pluginId: PROBE, handlerId: 'signal-inspector', input: { to: 'host', how } });
    // Before: ok ('sent'), and the host got the signal (without a listener of its own, its inspector opened).
    expectError(result, 'PERMISSION_DENIED');
    expect(result.error.details).toMatchObject({ resource: 'Inspector:SIGUSR1', phase: 'runtime' });
    expect(result.error.message).toMatch(/lets no child open Node's inspector/);
    // A signal that got through would have been delivered by now; give its listener a turn to run.
    await sleep(200);
    expect(received, 'SIGUSR1 signals that reached the host').toBe(0);
  });

  it("through Node's raw kill, which turns its arguments into numbers itself, it never arrives either", async () => {
    received = 0;
    // Before: both reached the host: a signal given as '10', and a pid whose valueOf said the child's own the first time only.
    expectError(await make().execute({ pluginId: PROBE, handlerId: 'signal-inspector', input: { to: 'host', how: 'raw-signal-string' } }), 'PERMISSION_DENIED');
    // The pid checked is the pid signalled: the child's own, which it listens for.
    expectOk(await make().execute({ pluginId: PROBE, handlerId: 'signal-inspector', input: { to: 'host', how: 'raw-pid-twice' } }));
    await sleep(200);
    expect(received, 'SIGUSR1 signals that reached the host').toBe(0);
  });

  it('other signals still go through process.kill (one to the child itself arrives)', async () => {
    const result = await make().execute({ pluginId: PROBE, handlerId: 'signal-inspector', input: { to: 'self', signal: 'SIGUSR2' } });
    expectOk(result);
    expect(result.data).toEqual({ received: 1 });
  });
});

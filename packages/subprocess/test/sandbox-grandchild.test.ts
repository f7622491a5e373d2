/**
 * A grandchild that leaves its process group (`detached`: own session and group) is out of
 * reach of a group kill. Under bubblewrap it still lives in the child's pid namespace, whose end
 * takes it along: on timeout, on abort, and when the host itself is SIGKILLed. Processes are
 * found by the token in their argv in the host's /proc: a sandboxed plugin reports pids of its
 * own namespace, which mean nothing here.
 */
import { chmod, cp, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { HOSTILE, expectError, fixturePlugins } from '@kb-labs/plugin-execution-conformance';
import { goneWithin, grandchildMarker, newToken, processesWithMarker, requireBubblewrap, sandboxPlatform } from '@kb-labs/plugin-execution-conformance/hostile-matrix';
import type { ExecuteOptions, ExecutionEvent, ExecutionResult } from '@kb-labs/plugin-execution-core';
import { SubprocessBackend } from '@kb-labs/plugin-execution-subprocess';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PROBE, probePlugin } from './helpers.js';
import { hostFailure, startHost, type HostProcess } from './sandbox-helpers.js';

let root: string;
const markers: string[] = [];
const hosts: HostProcess[] = [];
const backends: SubprocessBackend[] = [];

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'kb-sandbox-grandchild-'));
});

afterEach(async () => {
  await Promise.all(backends.splice(0).map((b) => b.shutdown({ timeoutMs: 2000 })));
  for (const host of hosts.splice(0)) if (host.child.exitCode === null && host.child.signalCode === null) host.child.kill('SIGKILL');
  // A failed test must not leave its grandchild running on the machine.
  for (const marker of markers.splice(0)) for (const pid of processesWithMarker(marker)) process.kill(pid, 'SIGKILL');
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const isStarted = (event: ExecutionEvent) => (event.event as { type?: string } | undefined)?.type === 'grandchild started';

/** Runs `spawn-detached` on a sandboxed backend; `whenStarted` runs once the grandchild is up. */
async function runDetached(options: ExecuteOptions, whenStarted: () => void = () => {}): Promise<{ result: ExecutionResult; marker: string; seenAlive: number[] }> {
  const backend = new SubprocessBackend({ sandbox: 'required', plugins: [fixturePlugins.hostile], workspace: { root }, permissions: { childProcess: true } });
  backends.push(backend);
  await requireBubblewrap(backend);
  const token = newToken();
  const marker = grandchildMarker(token);
  markers.push(marker);
  let seenAlive: number[] = [];
  const onEvent = (event: ExecutionEvent) => {
    if (!isStarted(event)) return;
    seenAlive = processesWithMarker(marker);
    whenStarted();
  };
  const result = await backend.execute({ pluginId: HOSTILE, handlerId: 'spawn-detached', input: { token } }, { ...options, onEvent });
  return { result, marker, seenAlive };
}

describe.skipIf(!sandboxPlatform)(`a detached grandchild under bubblewrap (Linux only${sandboxPlatform ? '' : `; this is ${process.platform}`})`, () => {
  it('dies when the execution times out', async () => {
    const { result, marker, seenAlive } = await runDetached({ timeoutMs: 2000 });
    expectError(result, 'TIMEOUT');
    expect(seenAlive.length, 'the grandchild was running while the handler ran').toBe(1);
    expect(await goneWithin(marker), 'grandchildren still alive 5 s after the timeout').toEqual([]);
  });

  it('dies when the execution is aborted', async () => {
    const controller = new AbortController();
    const { result, marker, seenAlive } = await runDetached({ signal: controller.signal, timeoutMs: 30_000 }, () => controller.abort());
    expectError(result, 'ABORTED');
    expect(seenAlive.length, 'the grandchild was running when the abort came').toBe(1);
    expect(await goneWithin(marker), 'grandchildren still alive 5 s after the abort').toEqual([]);
  });

  it('dies when the host process is SIGKILLed', async () => {
    const token = newToken();
    const marker = grandchildMarker(token);
    markers.push(marker);
    const host = startHost('sandbox-host-grandchild.mjs', { plugin: fixturePlugins.hostile, root, token });
    hosts.push(host);
    const isolation = await host.waitFor('isolation', 20_000);
    expect(isolation, `bubblewrap is required for this test; ${hostFailure(host, 'its isolation')}`).toHaveProperty('isolation');
    expect((isolation!.isolation as { active?: string }).active, `bubblewrap is required for this test: ${JSON.stringify(isolation)}`).toBe('bubblewrap');
    expect(await host.waitFor('started', 30_000), hostFailure(host, 'the grandchild started')).toEqual({ started: true });
    expect(processesWithMarker(marker).length, 'the grandchild was running before the host was killed').toBe(1);
    host.child.kill('SIGKILL');
    await host.exited;
    expect(host.child.signalCode).toBe('SIGKILL');
    expect(await goneWithin(marker), 'grandchildren still alive 5 s after the host was SIGKILLed').toEqual([]);
  }, 90_000);
});

describe.runIf(process.platform === 'linux')('a grandchild in an unsandboxed child\'s process group', () => {
  it('dies when the host process is SIGKILLed (the child, whose channel closed, kills its own group: the host cannot)', async () => {
    const token = newToken();
    const marker = `kb-grandchild:${token}`;
    markers.push(marker);
    const host = startHost('sandbox-host-grandchild.mjs', { plugin: probePlugin, root, token, sandbox: 'off', pluginId: PROBE, handlerId: 'grandchild' });
    hosts.push(host);
    expect(await host.waitFor('started', 30_000), hostFailure(host, 'the grandchild started')).toEqual({ started: true });
    expect(processesWithMarker(marker).length, 'the grandchild was running before the host was killed').toBe(1);
    host.child.kill('SIGKILL');
    await host.exited;
    expect(await goneWithin(marker), 'grandchildren still alive 5 s after the host was SIGKILLed').toEqual([]);
  }, 60_000);
});

describe.runIf(process.platform === 'linux')('a host that exits without shutdown()', () => {
  it('takes its sandboxes along, those still being set up included (spares it was replacing)', async () => {
    // Where the sandbox user can read it (a host running as root runs its sandboxes as nobody then).
    const reachable = await mkdtemp(path.join(os.tmpdir(), 'kb-sandbox-exits-'));
    markers.push(reachable);
    const plugin = path.join(reachable, 'basic');
    await cp(fixturePlugins.basic, plugin, { recursive: true });
    await chmod(reachable, 0o755);
    try {
      await hostsExitOneAfterAnother(plugin);
    } finally {
      await rm(reachable, { recursive: true, force: true });
    }
  }, 90_000);

  async function hostsExitOneAfterAnother(plugin: string): Promise<void> {
    for (let run = 0; run < 4; run++) {
      // Each run its own root: it is in every one of its sandboxes' bubblewrap arguments.
      const runRoot = await mkdtemp(path.join(root, 'exits-'));
      markers.push(runRoot);
      const host = startHost('sandbox-host-exits.mjs', { plugin, root: runRoot });
      hosts.push(host);
      expect(await host.waitFor('done', 30_000), hostFailure(host, 'its execution')).toEqual({ done: true });
      await host.exited;
      expect(await goneWithin(runRoot, 3000), `run ${run}: sandbox processes still alive 3 s after their host exited`).toEqual([]);
    }
  }
});

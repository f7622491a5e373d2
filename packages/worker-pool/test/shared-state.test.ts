/**
 * What plugins on one thread share without patching any intrinsic — the Buffer pool, the
 * performance timeline, fetch's global dispatcher — reaches no other handler's execution.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { POOL, expectOk, okData, runners, useBackends } from './helpers.js';

describe('worker-pool: state shared on a thread without patching anything', () => {
  const backends = useBackends();

  it("a handler that kept a pooled Buffer cannot read, through its .buffer, what another handler put in its own later", async () => {
    const backend = backends.make({ maxThreads: 1 });
    expectOk(await backend.execute({ pluginId: POOL, handlerId: 'read-pool' }));
    expectOk(await backend.execute({ pluginId: POOL, handlerId: 'pool-secret', input: { secret: 'hunter2-only-mine' } }));
    const seen = okData(await backend.execute({ pluginId: POOL, handlerId: 'read-pool' })) as string[];
    // Before: ['svc:hunter2-only-mine'], on the same thread.
    expect(seen.join('\n')).not.toContain('hunter2');
    expect((await runners(backend)).started).toBe(1);
  });

  it('nor through a pool it had Node make larger under a raised Buffer.poolSize, set back at once: the thread is retired first', async () => {
    const backend = backends.make({ maxThreads: 1 });
    expectOk(await backend.execute({ pluginId: POOL, handlerId: 'read-big-pool' }));
    expectOk(await backend.execute({ pluginId: POOL, handlerId: 'pool-secret', input: { secret: 'hunter2-only-mine' } }));
    const seen = okData(await backend.execute({ pluginId: POOL, handlerId: 'read-big-pool' })) as string[];
    // Before: ['svc:hunter2-only-mine'], on the same thread, which was never retired.
    expect(seen.join('\n')).not.toContain('hunter2');
    expect(await runners(backend)).toMatchObject({ redispatched: 1, retired: { 'globals-tampered': 1 } });
  });

  it("a handler's performance marks are gone before another handler runs on the thread; its own next execution still sees them", async () => {
    const backend = backends.make({ maxThreads: 1 });
    expect(okData(await backend.execute({ pluginId: POOL, handlerId: 'perf-marks', input: { name: 'token=secret' } }))).toEqual(['token=secret']);
    expect(okData(await backend.execute({ pluginId: POOL, handlerId: 'perf-marks' }))).toEqual(['token=secret']);
    expect(okData(await backend.execute({ pluginId: POOL, handlerId: 'perf-marks-too' }))).toEqual([]);
  });

  it("fetch's global dispatcher one handler installs (setGlobalDispatcher) answers no other handler's fetch: the thread is retired first", async () => {
    const server = http.createServer((_request, response) => response.end('real'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/?key=B-only`;
    const backend = backends.make({ maxThreads: 1, permissions: { network: true } });
    try {
      expect(okData(await backend.execute({ pluginId: POOL, handlerId: 'set-dispatcher' }))).toBe('set');
      // Before: 'forged', the request (and its key) seen by the other handler's dispatcher.
      expect(okData(await backend.execute({ pluginId: POOL, handlerId: 'fetch-text', input: { url } }))).toBe('real');
      expect(await runners(backend)).toMatchObject({ started: 2, retired: { 'globals-tampered': 1 } });
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  it("process.throwDeprecation one handler sets does not turn another handler's deprecated call into a crash: the thread is retired first", async () => {
    // Without vitest's --require suppress-warnings.cjs, which replaces process.emitWarning on every thread.
    const backend = backends.make({ maxThreads: 1, execArgv: [] });
    expect(okData(await backend.execute({ pluginId: POOL, handlerId: 'throws-deprecations' }))).toBe('set');
    // Before: WORKER_CRASHED, reason 'uncaught-exception' ('callsDeprecated: old API'), on the same thread.
    expect(okData(await backend.execute({ pluginId: POOL, handlerId: 'calls-deprecated' }))).toBe('fine');
    expect(await runners(backend)).toMatchObject({ started: 2, redispatched: 1, retired: { 'globals-tampered': 1 } });
  });

  it("environment data one handler sets (worker_threads.setEnvironmentData) reaches no other handler's getEnvironmentData: the thread is retired first", async () => {
    const backend = backends.make({ maxThreads: 1 });
    expect(okData(await backend.execute({ pluginId: POOL, handlerId: 'sets-environment-data' }))).toBe('set');
    // Before: { endpoint: 'https://attacker.invalid' }, on the same thread.
    expect(okData(await backend.execute({ pluginId: POOL, handlerId: 'reads-environment-data' }))).toBeNull();
    expect(await runners(backend)).toMatchObject({ started: 2, redispatched: 1, retired: { 'globals-tampered': 1 } });
  });

  it.runIf(process.platform === 'linux')("a thread's CPU priority one handler lowers (os.setPriority) is not another handler's: the thread is retired first", async () => {
    const backend = backends.make({ maxThreads: 1 });
    const started = okData(await backend.execute({ pluginId: POOL, handlerId: 'reads-priority' })) as number;
    expect(okData(await backend.execute({ pluginId: POOL, handlerId: 'lowers-priority' }))).toBe(Math.min(started + 10, 19));
    // Before: started + 10, on the same thread (on Linux a thread's nice value is its own, and
    // raising it back takes privileges a host seldom has).
    expect(okData(await backend.execute({ pluginId: POOL, handlerId: 'reads-priority' }))).toBe(started);
    expect(await runners(backend)).toMatchObject({ started: 2, redispatched: 1, retired: { 'globals-tampered': 1 } });
  });
});

/**
 * What a caller sees when a worker, the network or the server fails, with real processes, a real
 * nats-server and real signals: the guarantees of docs/backends/queue.md's failure table.
 * Each test has a pool (and, where it breaks things, a server or proxy) of its own.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BASIC, expectError, expectOk, fixturePlugins, waitFor } from '@kb-labs/plugin-execution-conformance';
import type { ExecutionResult } from '@kb-labs/plugin-execution-core';
import { QueueBackend, type QueueBackendOptions, type QueueRunnerStats } from '@kb-labs/plugin-execution-queue';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startNatsServer, type StartNatsServerOptions } from '../../../scripts/nats-server.mjs';
import { QUEUE_PLUGIN, QUEUE_PROBE, natsServer, newPool, startWorker, type WorkerProcess } from './helpers.js';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.js';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The issue's bound for a lost worker, with the default heartbeats: WORKER_CRASHED within 5 s. */
const LOST_WITHIN_MS = 5000;
/** Slack for a shared, loaded CI machine on top of a stated bound. */
const SLACK_MS = 3000;
/** Longer than the stream's ack wait: a redelivery, if there were one, would have happened. */
const REDELIVERY_WINDOW_MS = 6500;

let server: { url: string; stop(): Promise<void> };
let markers: string;
const cleanups: Array<() => Promise<unknown>> = [];

beforeAll(async () => {
  server = await natsServer();
  markers = await mkdtemp(path.join(os.tmpdir(), 'kb-queue-chaos-'));
});

/** Hosts and workers of the test, stopped newest first (before a describe's proxy closes: through a closed proxy a worker's stop waits for its reconnection). */
async function cleanUp(): Promise<void> {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
}

afterEach(cleanUp);

afterAll(async () => {
  await server?.stop();
  await rm(markers, { recursive: true, force: true });
});

function host(natsUrl: string, pool: string, options: QueueBackendOptions = {}): QueueBackend {
  const backend = new QueueBackend({ connection: { servers: natsUrl }, pool, plugins: [fixturePlugins.basic, QUEUE_PLUGIN], workspace: false, ...options });
  cleanups.push(() => backend.shutdown({ timeoutMs: 3000 }));
  return backend;
}

/** A nats-server of the test's own (it restarts or stops it), stopped after the test. */
async function ownServer(options?: StartNatsServerOptions) {
  const server = await startNatsServer(options);
  cleanups.push(() => server.stop());
  return server;
}

async function worker(natsUrl: string, pool: string, concurrency = 1, backend = 'worker-pool'): Promise<WorkerProcess> {
  const started = await startWorker({ natsUrl, pool, backend, concurrency, plugins: [fixturePlugins.basic, QUEUE_PLUGIN] });
  cleanups.push(async () => {
    if (started.child.signalCode === null && started.child.exitCode === null) started.child.kill('SIGCONT');
    await started.stop();
  });
  return started;
}

async function marks(file: string): Promise<string[]> {
  return (await readFile(file, 'utf8').catch(() => '')).split('\n').filter(Boolean);
}

/** Send a `mark` that runs until stopped (or for `ms`); resolves once its handler has started on a worker. */
async function startMark(backend: QueueBackend, file: string, ms?: number): Promise<{ result: Promise<ExecutionResult> }> {
  let running!: () => void;
  const started = new Promise<void>((resolve) => (running = resolve));
  const input = ms === undefined ? { file } : { file, ms };
  const result = backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'mark', input }, { timeoutMs: 120_000, onEvent: () => running() });
  await Promise.race([started, result.then((r) => Promise.reject(new Error(`ended before it started: ${JSON.stringify(r)}`)))]);
  return { result };
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Block this host's event loop for 5 s (past workerLostMs): its worker stops `result`'s execution, and the caller, which never aborted, gets WORKER_CRASHED (runner-lost). */
async function expectStoppedForSilence(result: Promise<ExecutionResult>): Promise<void> {
  const until = Date.now() + 5000;
  while (Date.now() < until);
  const outcome = await result;
  expectError(outcome, 'WORKER_CRASHED');
  expect(outcome.error.details).toMatchObject({ reason: 'runner-lost' });
  expect(outcome.error.message).toMatch(/stopped on worker \S+: its caller has not answered heartbeats for \d+ ms/);
}

describe('a worker that dies mid-execution', () => {
  it('SIGKILL: WORKER_CRASHED (runner-lost) within the bound, and the execution never runs again on another worker', async () => {
    const pool = newPool('kill9');
    const doomed = await worker(server.url, pool);
    const backend = host(server.url, pool);
    const file = path.join(markers, 'kill9.log');
    const { result } = await startMark(backend, file);
    // A healthy worker is there to take a redelivery, if the task were ever redelivered.
    const survivor = await worker(server.url, pool);
    const killedAt = performance.now();
    doomed.child.kill('SIGKILL');
    const outcome = await result;
    const detectedMs = performance.now() - killedAt;
    expectError(outcome, 'WORKER_CRASHED');
    expect(outcome.error.details).toMatchObject({ reason: 'runner-lost', runnerId: expect.stringContaining(doomed.id) });
    expect(detectedMs).toBeLessThan(LOST_WITHIN_MS + SLACK_MS);
    await sleep(REDELIVERY_WINDOW_MS);
    expect(await marks(file)).toEqual([`${outcome.meta.executionId} started`]);
    // The pool goes on with the survivor.
    const next = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'after' });
    expectOk(next);
    expect(next.meta.runnerId).toContain(survivor.id);
  });

  it('SIGKILL right after its start, and a new process under the same worker id: reported lost after workerLostMs (not taken for the old one, still there)', async () => {
    const pool = newPool('kill9same');
    const id = `fixed-${pool}`;
    const first = await startWorker({ natsUrl: server.url, pool, id, concurrency: 1, plugins: [fixturePlugins.basic, QUEUE_PLUGIN] });
    cleanups.push(() => first.stop());
    // A caller this patient has its workers beat every 3 s: the first one names nothing yet.
    const backend = host(server.url, pool, { workerLostMs: 9000 });
    const { result } = await startMark(backend, path.join(markers, 'kill9same.log'));
    first.child.kill('SIGKILL');
    const second = await startWorker({ natsUrl: server.url, pool, id, concurrency: 1, plugins: [fixturePlugins.basic, QUEUE_PLUGIN] });
    cleanups.push(() => second.stop());
    const outcome = await result;
    expectError(outcome, 'WORKER_CRASHED');
    expect(outcome.error.message).toMatch(/ sent no heartbeat for \d+ ms \(workerLostMs: 9000\)$/);
  }, 60_000);

  it('SIGSTOP: WORKER_CRASHED; once it runs again it stops that execution and delivers nothing late', async () => {
    const pool = newPool('sigstop');
    const frozen = await worker(server.url, pool);
    const backend = host(server.url, pool);
    const file = path.join(markers, 'sigstop.log');
    const { result } = await startMark(backend, file);
    frozen.child.kill('SIGSTOP');
    const outcome = await result;
    expectError(outcome, 'WORKER_CRASHED');
    expect(outcome.error.details).toMatchObject({ reason: 'runner-lost' });
    frozen.child.kill('SIGCONT');
    // Back, it learns the execution was given up on, and its handler is told to stop.
    await waitFor(async () => (await marks(file)).some((line) => line.includes(' signal ')), 15_000);
    const lines = await marks(file);
    expect(lines[0]).toBe(`${outcome.meta.executionId} started`);
    expect(lines.filter((line) => line.endsWith(' started'))).toHaveLength(1);
    // It is a working worker again.
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'thawed' }));
  });

  it.each(['worker-pool', 'in-process'])('SIGSTOP while its handler\'s module loads (%s): when it runs again, the handler is not begun', async (backendType) => {
    const pool = newPool('sigstopload');
    const frozen = await worker(server.url, pool, 1, backendType);
    const backend = host(server.url, pool);
    const file = path.join(markers, `sigstop-load-${backendType}.log`);
    let accepted!: () => void;
    const started = new Promise<void>((resolve) => (accepted = resolve));
    const result = backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'slow-load', input: { file } }, { timeoutMs: 60_000, onStart: () => accepted() });
    await started;
    // Its module takes 1.5 s to load: stopped in the middle, for longer than the caller's workerLostMs (3 s).
    await sleep(300);
    frozen.child.kill('SIGSTOP');
    const outcome = await result;
    expectError(outcome, 'WORKER_CRASHED');
    frozen.child.kill('SIGCONT');
    // Back, the load ends at once (its timer is overdue) and the runner asks whether it may begin: it may not.
    await sleep(3000);
    expect(await marks(file)).toEqual([]);
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'thawed' }));
  }, 60_000);

  it('SIGSTOP while idle: a task it had fetched waits for the consumer\'s ack wait, and a time limit shorter than that says so, not only that slots were free', async () => {
    const pool = newPool('sigstopidle');
    const frozen = await worker(server.url, pool, 1);
    const backend = host(server.url, pool);
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'warm' }));
    frozen.child.kill('SIGSTOP');
    try {
      const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'held' }, { timeoutMs: 1500 });
      expectError(result, 'TIMEOUT');
      expect(result.error.message).toContain('a worker that fetched it and then went silent (stopped, or its link cut) holds it for up to 5 s before another may take it');
    } finally {
      frozen.child.kill('SIGCONT');
    }
  });
});

describe('a host whose event loop is blocked', () => {
  it('for longer than a worker waits for its answer to `started`: the worker withdraws, the task runs once the host is back, and nothing is blamed on a worker', async () => {
    const pool = newPool('hostblocked');
    await worker(server.url, pool, 1);
    const backend = host(server.url, pool);
    const file = path.join(markers, 'hostblocked.log');
    // The worker's one slot is busy: the next task waits in the stream until it is free.
    const first = await startMark(backend, file, 300);
    const second = backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'mark', input: { file, ms: 10 } }, { timeoutMs: 60_000 });
    await sleep(150);
    // Blocked past the worker's wait for `started` (3 s, the default workerLostMs): the worker
    // takes the task once its slot frees, asks, hears nothing, and puts the task back, twice.
    const until = Date.now() + 7000;
    while (Date.now() < until);
    expectOk(await first.result);
    const outcome = await second;
    expectOk(outcome);
    const started = (await marks(file)).filter((line) => line.endsWith(' started'));
    expect(started).toEqual([`${(await first.result).meta.executionId} started`, `${outcome.meta.executionId} started`]);
  });

  it("while the worker sends the host another execution's output, which holds its `withdrawn` behind that output's pacing: the task it puts back is not lost, and runs once the host is back", async () => {
    const pool = newPool('withdrawpaced');
    await worker(server.url, pool, 2);
    const backend = host(server.url, pool);
    const file = path.join(markers, 'withdrawpaced.log');
    let lines = 0;
    const flood = backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'flood', input: { waitMs: 0, count: 30_000, bytes: 1000, afterMs: 0 } }, { timeoutMs: 60_000, onLog: () => lines++ });
    while (lines < 500) await sleep(10);
    const second = backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'mark', input: { file, ms: 10 } }, { timeoutMs: 60_000 });
    await sleep(1);
    // Blocked past the worker's wait for `started`: its `withdrawn` waits behind the flood's
    // unacknowledged output while the task goes back to the stream and comes to it again.
    const until = Date.now() + 4000;
    while (Date.now() < until);
    const outcome = await second;
    expectOk(outcome);
    expect((await marks(file)).filter((line) => line.endsWith(' started'))).toEqual([`${outcome.meta.executionId} started`]);
    // The flood itself the worker stopped, its caller silent past workerLostMs (the test below).
    const flooded = await flood;
    expect(flooded.ok ? 'ok' : flooded.error.code).toMatch(/^(ok|WORKER_CRASHED)$/);
  });

  it('for longer than workerLostMs while an execution runs: the worker stops it, and the caller, which never aborted, gets WORKER_CRASHED (runner-lost), not ABORTED', async () => {
    const pool = newPool('hoststall');
    await worker(server.url, pool);
    const backend = host(server.url, pool);
    const file = path.join(markers, 'hoststall.log');
    const { result } = await startMark(backend, file);
    await expectStoppedForSilence(result);
  });
});

describe('a host slower than its workers', () => {
  it('whose onLog takes its time while workers flood logs: the executions run to their end at the host\'s pace (heartbeats are not stuck behind the backlog), and no line is lost', async () => {
    const pool = newPool('slowhost');
    await Promise.all([0, 1, 2, 3].map(() => worker(server.url, pool, 1)));
    const backend = host(server.url, pool);
    const count = 20_000;
    const received: number[] = [0, 0, 0, 0];
    const notices: string[] = [];
    const results = await Promise.all(
      [0, 1, 2, 3].map((i) =>
        backend.execute(
          { pluginId: QUEUE_PROBE, handlerId: 'flood', input: { waitMs: 0, count, bytes: 2000, afterMs: 0 } },
          {
            timeoutMs: 120_000,
            onLog: (entry) => {
              if (entry.level === 'warn') return void notices.push(entry.message);
              received[i]!++;
              // A synchronous log sink: 0.2 ms a line.
              const until = performance.now() + 0.2;
              while (performance.now() < until);
            },
          },
        ),
      ),
    );
    for (const result of results) {
      expectOk(result);
      expect(result.data).toEqual({ logged: count });
    }
    // The handlers waited for the host (their threads at their windows): every line delivered, none dropped.
    expect(notices).toEqual([]);
    expect(received).toEqual([count, count, count, count]);
  }, 90_000);
});

describe('the network between a worker and the server', () => {
  let proxy: TcpProxy;

  beforeAll(async () => {
    proxy = await startTcpProxy(Number(new URL(server.url).port));
  });
  afterAll(() => proxy?.close());

  it('cut mid-execution: WORKER_CRASHED within the bound; restored, the worker stops that execution and runs nothing twice', async () => {
    const pool = newPool('netcut');
    await worker(proxy.url, pool);
    const backend = host(server.url, pool);
    const file = path.join(markers, 'netcut.log');
    const { result } = await startMark(backend, file);
    const cutAt = performance.now();
    proxy.cut();
    const outcome = await result;
    const detectedMs = performance.now() - cutAt;
    expectError(outcome, 'WORKER_CRASHED');
    expect(outcome.error.details).toMatchObject({ reason: 'runner-lost' });
    expect(detectedMs).toBeLessThan(LOST_WITHIN_MS + SLACK_MS);
    proxy.restore();
    await waitFor(async () => (await marks(file)).some((line) => line.includes(' signal ')), 20_000);
    await sleep(REDELIVERY_WINDOW_MS);
    expect((await marks(file)).filter((line) => line.endsWith(' started'))).toEqual([`${outcome.meta.executionId} started`]);
    // Through the restored link, the worker serves again.
    const after = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'reconnected' }, { timeoutMs: 30_000 });
    expectOk(after);
  });

  /** A worker (drain timeout 0.5 s) running an execution; `fault` on its link, then SIGTERM: how long until it exits, and the caller's result. */
  async function drainAfter(name: string, fault: () => void): Promise<{ exitCode: number | null; exitMs: number; result: ExecutionResult }> {
    const pool = newPool(name);
    const drained = await startWorker({ natsUrl: proxy.url, pool, concurrency: 1, drainMs: 500, plugins: [fixturePlugins.basic, QUEUE_PLUGIN] });
    cleanups.push(() => drained.stop());
    const { result } = await startMark(host(server.url, pool), path.join(markers, `${name}.log`));
    fault();
    const exited = new Promise<number | null>((resolve) => drained.child.once('exit', resolve));
    const signalledAt = performance.now();
    drained.child.kill('SIGTERM');
    const exitCode = await exited;
    return { exitCode, exitMs: performance.now() - signalledAt, result: await result };
  }

  it('cut, then SIGTERM: the worker exits about a second after its drain timeout (what it still had to send cannot go), not five', async () => {
    const drained = await drainAfter('netcutdrain', () => proxy.cut());
    expect(drained.exitCode).toBe(0);
    // The drain's 500 ms, the connection's last second, and slack for a loaded machine: under the 5.5 s it took before.
    expect(drained.exitMs).toBeLessThan(4000);
    expectError(drained.result, 'WORKER_CRASHED');
    proxy.restore();
  });

  it('reset and turned away, its handler stopped by the worker (its caller written off), then SIGTERM: the worker exits without waiting out its drain timeout for a result that cannot go', async () => {
    const pool = newPool('netcutstopped');
    const drained = await startWorker({ natsUrl: proxy.url, pool, concurrency: 1, drainMs: 20_000, plugins: [fixturePlugins.basic, QUEUE_PLUGIN] });
    cleanups.push(() => drained.stop());
    const file = path.join(markers, 'netcutstopped.log');
    const { result } = await startMark(host(server.url, pool), file);
    proxy.refuse(true);
    proxy.reset();
    expectError(await result, 'WORKER_CRASHED');
    await waitFor(async () => (await marks(file)).some((line) => line.includes(' signal ')), 20_000);
    const exited = new Promise<number | null>((resolve) => drained.child.once('exit', resolve));
    const signalledAt = performance.now();
    drained.child.kill('SIGTERM');
    expect(await exited).toBe(0);
    // Nothing runs: no wait for the 20 s drain timeout (it took all of it, and a second more).
    expect(performance.now() - signalledAt).toBeLessThan(10_000);
    proxy.refuse(false);
  }, 60_000);

  it('reset and turned away (reconnecting), then SIGTERM: the worker exits about a second after its drain timeout as well, not five (its stopped execution\'s result waits for a server it cannot reach)', async () => {
    const drained = await drainAfter('netresetdrain', () => {
      proxy.refuse(true);
      proxy.reset();
    });
    expect(drained.exitCode).toBe(0);
    // The drain's 500 ms, a second for its handler to stop, and slack for a loaded machine: under the 6–7 s it took before.
    expect(drained.exitMs).toBeLessThan(4000);
    expectError(drained.result, 'WORKER_CRASHED');
    proxy.refuse(false);
  });
});

describe('a slow or flaky link between a worker and the server', () => {
  let proxy: TcpProxy;

  beforeEach(async () => {
    proxy = await startTcpProxy(Number(new URL(server.url).port));
  });
  afterEach(async () => {
    await cleanUp();
    proxy?.close();
  });

  it("eight results of 240 KB (each one message) finishing together over a worker link of 256 KiB/s all arrive, and another execution's heartbeats get through meanwhile", async () => {
    const pool = newPool('slowresults');
    await worker(proxy.url, pool, 9);
    const backend = host(server.url, pool);
    const beside = await startMark(backend, path.join(markers, 'slowresults.log'), 9000);
    proxy.bandwidth(256 * 1024);
    // Before: all eight went onto the link at once, ~7.5 s of it queued ahead of the worker's
    // heartbeats: most of the results, and the execution beside them, were failed (runner-lost).
    const returnBytes = 240 * 1024;
    const results = await Promise.all(Array.from({ length: 8 }, () => backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'sized', input: { returnBytes } }, { timeoutMs: 60_000 })));
    for (const result of results) {
      expectOk(result);
      expect(result.data).toHaveLength(returnBytes);
    }
    expectOk(await beside.result);
  }, 90_000);

  it('a round trip of 1.6 s (half the default workerLostMs): a 5 s execution runs to its end (late answers are still answers)', async () => {
    const pool = newPool('slowlink');
    proxy.latency(800);
    await worker(proxy.url, pool);
    const backend = host(server.url, pool);
    const result = await backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'mark', input: { file: path.join(markers, 'slowlink.log'), ms: 5000 } }, { timeoutMs: 30_000 });
    expectOk(result);
    expect(result.data).toEqual({ done: true });
  });

  it('an abort sent while the worker is reconnecting still reaches the handler, once it is back', async () => {
    const pool = newPool('abortgap');
    await worker(proxy.url, pool);
    const backend = host(server.url, pool);
    const file = path.join(markers, 'abortgap.log');
    const controller = new AbortController();
    let running!: () => void;
    const started = new Promise<void>((resolve) => (running = resolve));
    const result = backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'mark', input: { file } }, { timeoutMs: 120_000, signal: controller.signal, onEvent: () => running() });
    await started;
    proxy.refuse(true);
    proxy.reset();
    // The cancel goes out while the worker has no connection: lost.
    controller.abort();
    expectError(await result, 'ABORTED');
    await sleep(1000);
    proxy.refuse(false);
    // Its heartbeats, once it is back, are answered with the cancel again.
    await waitFor(async () => (await marks(file)).some((line) => line.endsWith(' signal ABORTED')), 10_000);
  });

  it('a platform call whose reply is lost in a reconnection fails in the handler instead of waiting for ever, and the result it returns during the outage reaches the caller', async () => {
    const pool = newPool('rpcgap');
    await worker(proxy.url, pool);
    const kv = {
      // The worker's link drops while the host answers: the reply is published into the gap.
      get: async () => {
        proxy.refuse(true);
        proxy.reset();
        setTimeout(() => proxy.refuse(false), 1000);
        await sleep(200);
        return 'lost in the gap';
      },
    };
    const backend = host(server.url, pool, { platform: { kv }, permissions: { platform: { kv: true } } });
    const result = await backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'kv-get', input: { key: 'k' } }, { timeoutMs: 60_000 });
    expectOk(result);
    expect(result.data).toMatchObject({ ok: false, code: 'WORKER_CRASHED' });
    expect((result.data as { message: string }).message).toContain('lost its connection to the NATS server while this call was in flight');
  });

  it("the first execution's timeout, while the host's first connection is still being made, ends it then: its slot is free at its result", async () => {
    const pool = newPool('firstconnect');
    proxy.cut();
    const backend = host(proxy.url, pool);
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'x' }, { timeoutMs: 1000 });
    expectError(result, 'TIMEOUT');
    // The connection attempt goes on (up to its 5 s): the execution no longer waits for it.
    expect((await backend.stats()).active).toBe(0);
    proxy.restore();
  });

  it("a 1.5 MB input over a host link of 256 KiB/s goes in parts: it runs, and the heartbeats of another execution get through meanwhile", async () => {
    const pool = newPool('slowinput');
    await worker(server.url, pool, 2);
    proxy.bandwidth(256 * 1024);
    const backend = host(proxy.url, pool);
    // Runs for as long as the input takes to cross: one message of 1.5 MB would hold the host's
    // heartbeat answers behind it for ~6 s, past workerLostMs.
    const beside = await startMark(backend, path.join(markers, 'slowinput.log'), 7000);
    const input = 'i'.repeat(1.5 * 1024 * 1024);
    const big = await backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'sized', input }, { timeoutMs: 20_000 });
    expectOk(big);
    expect(big.data).toEqual({ length: input.length });
    const result = await beside.result;
    expectOk(result);
    expect(result.data).toEqual({ done: true });
  });

  it('a host that goes silent while its large input is still on its way: the worker stops the execution, which never ran, and the caller gets WORKER_CRASHED (runner-lost), not ABORTED', async () => {
    const pool = newPool('silentinput');
    await worker(server.url, pool);
    proxy.bandwidth(512 * 1024);
    const backend = host(proxy.url, pool);
    const input = 'i'.repeat(2 * 1024 * 1024);
    const result = backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'sized', input }, { timeoutMs: 30_000 });
    // Started (its input follows in parts, ~4 s at this rate), then the host's loop is blocked past workerLostMs.
    await sleep(700);
    await expectStoppedForSilence(result);
  });

  it('a large result whose transfer the link drops halfway is sent again, whole, as soon as the worker is back (not after its part timeout of 10 s)', async () => {
    const pool = newPool('resultcut');
    await worker(proxy.url, pool);
    // What is shown is when the result goes again, not how soon a silent worker is taken for lost:
    // on a loaded machine the outage and the reconnection can outlast the default 3 s.
    const backend = host(server.url, pool, { workerLostMs: 8000 });
    const returnBytes = 4 * 1024 * 1024;
    let dropped = false;
    // Slow enough that the result's 16 parts take about two seconds to cross (a narrow link: on
    // one with a long round trip several parts cross at once), so the link drops early in the
    // transfer; once it is back the link is fast again, so that on a loaded machine what is left
    // of the 9 s is still far more than the resend takes.
    proxy.bandwidth(2 * 1024 * 1024);
    const result = await backend.execute(
      { pluginId: QUEUE_PROBE, handlerId: 'big-result', input: { returnBytes } },
      {
        // Well under the 10 s a cut-off part waited for its answer before it was sent again.
        timeoutMs: 9000,
        onEvent: () =>
          setTimeout(() => {
            dropped = true;
            proxy.refuse(true);
            proxy.reset();
            setTimeout(() => {
              proxy.bandwidth(0);
              proxy.refuse(false);
            }, 500);
          }, 400),
      },
    );
    expect(dropped).toBe(true);
    expectOk(result);
    expect(result.data).toHaveLength(returnBytes);
  });

  it('a small result a reset takes before the server has it goes again once the worker is back: the caller gets it (not WORKER_CRASHED)', async () => {
    const pool = newPool('resultlost');
    await worker(proxy.url, pool);
    const backend = host(server.url, pool, { workerLostMs: 8000 });
    proxy.resetOn('Kb-Kind: result');
    const result = await backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'sized', input: 'abc' }, { timeoutMs: 20_000 });
    expect(proxy.resets()).toBe(1);
    expectOk(result);
    expect(result.data).toEqual({ length: 3 });
  });

  it('log lines and events a reset takes on their way from the worker are not lost silently: the caller is told how many, and every one is either delivered or counted', async () => {
    const pool = newPool('outputlost');
    await worker(proxy.url, pool);
    const backend = host(server.url, pool, { workerLostMs: 8000 });
    const lines: string[] = [];
    const notices: string[] = [];
    let events = 0;
    proxy.resetOn('line 7');
    const result = await backend.execute(
      { pluginId: QUEUE_PROBE, handlerId: 'chatty', input: { count: 10 } },
      { timeoutMs: 20_000, onEvent: () => void events++, onLog: (entry) => (entry.level === 'warn' ? notices.push(entry.message) : lines.push(entry.message)) },
    );
    expect(proxy.resets()).toBe(1);
    expectOk(result);
    expect(notices).toHaveLength(1);
    const [, lost, sent] = /^(\d+) of the (\d+) log line\(s\) and event\(s\) of this execution did not reach this host: lost on the way from worker /.exec(notices[0]!) ?? [];
    expect(Number(sent)).toBe(20);
    expect(Number(lost)).toBeGreaterThan(0);
    expect(lines).not.toContain('line 7');
    expect(lines.length + events + Number(lost)).toBe(20);
  });

  it('a small result that four resets in a row take (it and each of its three re-sends): WORKER_CRASHED saying the worker is there but its result may have been lost, not that it sent no heartbeat', async () => {
    const pool = newPool('resultlost4');
    await worker(proxy.url, pool);
    const backend = host(server.url, pool);
    proxy.resetOn('Kb-Kind: result', 1, false, 4);
    const result = await backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'sized', input: 'abc' }, { timeoutMs: 40_000 });
    expect(proxy.resets()).toBe(4);
    expectError(result, 'WORKER_CRASHED');
    expect(result.error.message).toMatch(/ was last seen \d+ ms ago but has named it in no heartbeat for \d+ ms \(workerLostMs: 3000\): its end \(the result\) may have been lost on the way, or the worker has gone since$/);
  }, 60_000);

  it('a large input whose transfer the link drops halfway is sent again, whole, once the worker is back (the execution does not fail)', async () => {
    const pool = newPool('inputcut');
    await worker(proxy.url, pool);
    const backend = host(server.url, pool, { workerLostMs: 8000 });
    const input = 'i'.repeat(4 * 1024 * 1024);
    // Its 16 parts take about two seconds to reach the worker; the link drops once a quarter has.
    proxy.bandwidth(2 * 1024 * 1024);
    const before = proxy.toClients();
    const running = backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'sized', input }, { timeoutMs: 30_000 });
    await waitFor(() => proxy.toClients() - before > 1024 * 1024, 15_000);
    const reached = proxy.toClients() - before;
    proxy.refuse(true);
    proxy.reset();
    await sleep(500);
    proxy.bandwidth(0);
    proxy.refuse(false);
    expect(reached).toBeLessThan(input.length);
    const result = await running;
    expectOk(result);
    expect(result.data).toEqual({ length: input.length });
  });

  it('a reset that takes the caller\'s answer to a start, while the worker has other executions of that caller: the worker withdraws, the task runs once, and no worker is blamed', async () => {
    const pool = newPool('lostaccept');
    await worker(proxy.url, pool, 4);
    const backend = host(server.url, pool);
    const file = path.join(markers, 'lostaccept.log');
    // The other execution keeps the worker's heartbeats to this caller going through the reset.
    const beside = await startMark(backend, path.join(markers, 'lostaccept-beside.log'), 9000);
    proxy.resetOn('remainingMs', 1, true);
    const result = await backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'mark', input: { file, ms: 10 } }, { timeoutMs: 30_000 });
    expect(proxy.resets()).toBe(1);
    expectOk(result);
    expect(await marks(file)).toEqual([`${result.meta.executionId} started`]);
    expectOk(await beside.result);
  }, 60_000);

  it('a reset that takes the worker\'s answer to the last part of a large input: the handler, which has it all, runs to its end (the caller does not give up on the transfer)', async () => {
    const pool = newPool('lastpart');
    await worker(proxy.url, pool);
    const backend = host(server.url, pool, { workerLostMs: 8000 });
    const file = path.join(markers, 'lastpart.log');
    // 1 MB: four parts of 256 KiB, each answered by the worker with an empty publish to the host's inbox.
    proxy.resetOn('PUB _INBOX.', 4);
    // Longer than the 10 s a part waits for its answer, and then two heartbeats.
    const result = await backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'mark', input: { file, ms: 14_000, pad: 'p'.repeat(1_000_000) } }, { timeoutMs: 40_000 });
    expect(proxy.resets()).toBe(1);
    expectOk(result);
    expect(result.data).toEqual({ done: true });
    expect(await marks(file)).toEqual([`${result.meta.executionId} started`]);
  }, 60_000);

  /** A handler logs 40 000 lines of 1 KB; the worker's link drops once it has begun and stays down 4 s. */
  async function logThroughOutage(backendType: string) {
    const pool = newPool('heldcap');
    await worker(proxy.url, pool, 1, backendType);
    const backend = host(server.url, pool, { workerLostMs: 60_000 });
    const lines: string[] = [];
    const notices: string[] = [];
    const count = 40_000;
    const result = await backend.execute(
      { pluginId: QUEUE_PROBE, handlerId: 'flood', input: { waitMs: 500, count, bytes: 1000, afterMs: 500 } },
      {
        timeoutMs: 120_000,
        onEvent: () => {
          proxy.refuse(true);
          proxy.reset();
          setTimeout(() => proxy.refuse(false), 4000);
        },
        onLog: (entry) => (entry.level === 'warn' ? notices.push(entry.message) : lines.push(entry.message)),
      },
    );
    expectOk(result);
    expect(result.data).toEqual({ logged: count });
    return { lines, notices, count };
  }

  it('an in-process one whose link is cut (acknowledgements stop coming), then reset: the lines dropped while it waited are all counted, in one notice, beside every line that came and those the reset took', async () => {
    const pool = newPool('heldcut');
    await worker(proxy.url, pool, 1, 'in-process');
    const backend = host(server.url, pool, { workerLostMs: 60_000 });
    const lines: string[] = [];
    const notices: string[] = [];
    const count = 30_000;
    let events = 0;
    const result = await backend.execute(
      // Short lines between the long ones fill the hold to its last bytes: no room for a notice there.
      { pluginId: QUEUE_PROBE, handlerId: 'flood', input: { waitMs: 300, count, bytes: 1000, afterMs: 3000, shortEvery: 10 } },
      {
        timeoutMs: 120_000,
        onEvent: () => {
          if (events++ > 0) return;
          proxy.cut();
          setTimeout(() => {
            proxy.reset();
            proxy.restore();
          }, 2500);
        },
        onLog: (entry) => (entry.level === 'warn' ? notices.push(entry.message) : lines.push(entry.message)),
      },
    );
    expectOk(result);
    // One notice for what the worker dropped (counted through both holds), and one for what the
    // reset took on the wire, if it took any.
    const held = notices.filter((notice) => / were not delivered: /.test(notice));
    expect(held).toHaveLength(1);
    const [, dropped, droppedEvents] = /^(\d+) log line\(s\) and (\d+) event\(s\) of this execution were not delivered: /.exec(held[0]!) ?? [];
    expect(Number(dropped)).toBeGreaterThan(1);
    const onTheWire = notices.filter((notice) => notice !== held[0]);
    expect(onTheWire.length).toBeLessThanOrEqual(1);
    const [, lost] = /^(\d+) of the \d+ log line\(s\) and event\(s\) of this execution did not reach this host/.exec(onTheWire[0] ?? '0 of the 0 log line(s) and event(s) of this execution did not reach this host') ?? [];
    expect(Number(droppedEvents)).toBe(0);
    // Every line, long or short: delivered, or counted in a notice.
    expect(lines.length + Number(dropped) + Number(lost)).toBe(count + count / 10);
  }, 60_000);

  it('a handler that logs tens of MB while its worker reconnects waits for the connection (worker-pool): every line arrives', async () => {
    const { lines, notices, count } = await logThroughOutage('worker-pool');
    expect(notices).toEqual([]);
    expect(lines).toHaveLength(count);
  });

  it('an in-process one, which cannot wait: the worker holds at most 16 MiB, and the caller is told how many lines were dropped, beside every line that came', async () => {
    const { lines, notices, count } = await logThroughOutage('in-process');
    expect(notices).toHaveLength(1);
    const dropped = Number(/^(\d+) log line\(s\) and 0 event\(s\) of this execution were not delivered: the worker's connection/.exec(notices[0]!)?.[1]);
    expect(dropped).toBeGreaterThan(0);
    // Every line is accounted for: delivered, or counted in the notice.
    expect(lines.length + dropped).toBe(count);
  });
});

describe('the network between the host and the server', () => {
  let proxy: TcpProxy;

  beforeAll(async () => {
    proxy = await startTcpProxy(Number(new URL(server.url).port));
  });
  afterAll(() => proxy?.close());

  it('cut: the execution in flight fails saying the host\'s own link may be cut, health() says the server does not answer, then that the connection is made again; restored, executions run', async () => {
    const pool = newPool('hostcut');
    await worker(server.url, pool);
    const backend = host(proxy.url, pool);
    const file = path.join(markers, 'hostcut.log');
    const { result } = await startMark(backend, file);
    const cutAt = performance.now();
    proxy.cut();
    const outcome = await result;
    expectError(outcome, 'WORKER_CRASHED');
    expect(outcome.error.details).toMatchObject({ reason: 'runner-lost' });
    expect(outcome.error.message).toMatch(/has not answered this host for \d+ ms either: the host's own link to it may be cut/);
    expect(performance.now() - cutAt).toBeLessThan(LOST_WITHIN_MS + SLACK_MS);
    // Not "no worker is connected": the host cannot hear any, and says why.
    const silent = await backend.health();
    expect(silent.ok).toBe(false);
    expect(silent.problems?.join('\n')).toMatch(/has not answered this host's ping within \d+ ms: the host's link to it may be cut/);
    // A new execution never reaches the server: its TIMEOUT says why, not that workers were busy.
    const unsent = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'cut' }, { timeoutMs: 2000 });
    expectError(unsent, 'TIMEOUT');
    expect(unsent.error.message).toMatch(/it never started \(the NATS server has not answered this host for \d+ ms: the host's own link to it may be cut\)/);
    // One with time to spare is given up on once its hand-over has waited its bound: said, not a bare "timeout".
    const handedOver = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'cut, patient' }, { timeoutMs: 30_000 });
    // A connection silent for 10 to 15 s is given up (nats.js's own default would take minutes).
    await waitFor(async () => /reconnecting/.test((await backend.health()).problems?.join('\n') ?? ''), 25_000);
    const notHanded = await handedOver;
    expectError(notHanded, 'WORKER_CRASHED');
    expect(notHanded.error.details).toMatchObject({ reason: 'runner-lost', phase: 'queued' });
    // Which words depend on whether its hand-over timed out before the connection was given up.
    expect(notHanded.error.message).toMatch(
      /(the server did not confirm the task in time \(10000 ms at most, one retry\): this host's link to it may be cut; no worker will run it|has been down for the 10000 ms a task waits to be handed over; nothing ran|lost its connection to the NATS server \([^)]+\) while the execution was in flight \(not started yet\))$/,
    );
    proxy.restore();
    const after = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'reconnected' }, { timeoutMs: 30_000 });
    expectOk(after);
    // The worker stopped the execution its caller lost, and nothing ran twice.
    await waitFor(async () => (await marks(file)).some((line) => line.includes(' signal ')), 20_000);
    expect((await marks(file)).filter((line) => line.endsWith(' started'))).toEqual([`${outcome.meta.executionId} started`]);
  }, 60_000);

  it('reset while tasks wait for a worker: they fail as never run, and once the host is back their tasks leave the stream (they held the bound: QUEUE_FULL for nothing)', async () => {
    const pool = newPool('hostreset');
    const backend = host(proxy.url, pool, { queueBound: 3 });
    // No worker: the three wait in the stream, which is full.
    const waiting = [0, 1, 2].map((i) => backend.execute({ pluginId: BASIC, handlerId: 'echo', input: i }, { timeoutMs: 60_000 }));
    await waitFor(async () => ((await backend.stats()).runners as QueueRunnerStats).queueDepth === 3, 10_000);
    proxy.reset();
    for (const result of await Promise.all(waiting)) {
      expectError(result, 'WORKER_CRASHED');
      expect(result.error.details).toMatchObject({ reason: 'runner-lost', phase: 'queued' });
    }
    await waitFor(async () => ((await backend.stats()).runners as QueueRunnerStats).queueDepth === 0, 20_000);
    // Room again: a new one waits for a worker (its time limit), not QUEUE_FULL.
    expectError(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'after' }, { timeoutMs: 1000 }), 'TIMEOUT');
  }, 60_000);

  it("ten tasks with 240 KB inputs (each inside its task message) over a host link of 256 KiB/s all run, and the execution running meanwhile keeps its heartbeats", async () => {
    const pool = newPool('slowtasks');
    await worker(server.url, pool, 4);
    const backend = host(proxy.url, pool);
    const beside = await startMark(backend, path.join(markers, 'slowtasks.log'), 14_000);
    proxy.bandwidth(256 * 1024);
    try {
      // Before: ~9 s of tasks queued at once ahead of the host's heartbeat answers: the worker
      // stopped the execution beside them, and some tasks were not confirmed in time.
      const input = 'i'.repeat(240 * 1024);
      const results = await Promise.all(Array.from({ length: 10 }, () => backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'sized', input }, { timeoutMs: 60_000 })));
      for (const result of results) {
        expectOk(result);
        expect(result.data).toEqual({ length: input.length });
      }
      expectOk(await beside.result);
    } finally {
      proxy.bandwidth(0);
    }
  }, 90_000);

  it('cut just before an execution whose time limit is shorter than workerLostMs: its TIMEOUT names the host\'s own link, not the workers', async () => {
    const pool = newPool('hostcutshort');
    await worker(server.url, pool);
    const backend = host(proxy.url, pool);
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'before' }));
    proxy.cut();
    try {
      const outcome = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'cut' }, { timeoutMs: 2000 });
      expectError(outcome, 'TIMEOUT');
      // Before: "no worker of pool … took it: 1 connected, 0 of their 2 slots busy …", the server silent for under workerLostMs (3 s).
      expect(outcome.error.message).toMatch(/it never started \(the NATS server has not answered this host for \d+ ms: the host's own link to it may be cut\)/);
    } finally {
      proxy.restore();
    }
  }, 60_000);

  it('cut: stats() gives no queueDepth (its read does not come back) rather than an old figure, and health() keeps saying the server does not answer, not that no worker is connected', async () => {
    const pool = newPool('hostcutstats');
    await worker(server.url, pool);
    const backend = host(proxy.url, pool);
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'before' }));
    expect(((await backend.stats()).runners as QueueRunnerStats).queueDepth).toBe(0);
    proxy.cut();
    try {
      const until = performance.now() + 10_000;
      while (performance.now() < until) {
        const runners = (await backend.stats()).runners as QueueRunnerStats;
        if (runners.connection === 'connected') expect(runners.queueDepth).toBeUndefined();
        const problems = (await backend.health()).problems?.join('\n') ?? '';
        expect(problems).not.toMatch(/no worker of pool/);
      }
    } finally {
      proxy.restore();
    }
  }, 60_000);

  it("cut with its tasks waiting in the stream: a worker passes that host over after its first unanswered start, and another host's executions run meanwhile, not starved behind tasks nobody can start", async () => {
    const pool = newPool('hostcutstarve');
    const silentHost = host(proxy.url, pool);
    const waiting = Array.from({ length: 8 }, (_, i) => silentHost.execute({ pluginId: BASIC, handlerId: 'echo', input: i }, { timeoutMs: 60_000 }));
    await waitFor(async () => ((await silentHost.stats()).runners as QueueRunnerStats).queueDepth === 8, 10_000);
    proxy.cut();
    await worker(server.url, pool, 2, 'in-process');
    const other = host(server.url, pool);
    const results = await Promise.all(Array.from({ length: 4 }, (_, i) => other.execute({ pluginId: BASIC, handlerId: 'echo', input: `other ${i}` }, { timeoutMs: 12_000 })));
    results.forEach((result, i) => {
      expectOk(result);
      expect(result.data).toBe(`other ${i}`);
    });
    proxy.restore();
    void Promise.allSettled(waiting);
  }, 60_000);

  it('cut while an execution runs: shutdown({ timeoutMs }) resolves about two seconds after its timeout (the stop\'s grace), not once the worker is taken for lost', async () => {
    const pool = newPool('hostcutshutdown');
    await worker(server.url, pool);
    // A worker taken for lost only after 20 s: a shutdown that waited for that verdict would take as long.
    const backend = host(proxy.url, pool, { workerLostMs: 20_000 });
    const { result } = await startMark(backend, path.join(markers, 'hostcutshutdown.log'));
    proxy.cut();
    const shutdownAt = performance.now();
    await backend.shutdown({ timeoutMs: 500 });
    expect(performance.now() - shutdownAt).toBeLessThan(500 + 2000 + SLACK_MS);
    expectError(await result, 'SHUTTING_DOWN');
    proxy.restore();
  }, 60_000);
});

describe('a caller that dies mid-execution', () => {
  /** A caller process (fixtures/caller.mjs) whose `mark` execution has started on a worker. */
  async function runningCaller(pool: string, file: string, executionId?: string): Promise<ChildProcess> {
    const caller = spawn(process.execPath, [path.join(here, 'fixtures', 'caller.mjs')], {
      env: { PATH: process.env.PATH ?? '', KB_NATS_URL: server.url, KB_POOL: pool, KB_PLUGIN: QUEUE_PLUGIN, KB_MARK_FILE: file, ...(executionId ? { KB_EXECUTION_ID: executionId } : {}) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    caller.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    caller.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    cleanups.push(async () => caller.kill('SIGKILL'));
    await waitFor(() => output.includes('running'), 20_000).catch(() => {
      throw new Error(`the caller never started its execution:\n${output}`);
    });
    return caller;
  }

  it('its execution is aborted on the worker (the handler\'s ctx.signal fires)', async () => {
    const pool = newPool('orphan');
    await worker(server.url, pool);
    const file = path.join(markers, 'orphan.log');
    (await runningCaller(pool, file)).kill('SIGKILL');
    await waitFor(async () => (await marks(file)).some((line) => line.includes(' signal ')), 15_000);
    expect((await marks(file)).filter((line) => line.endsWith(' started'))).toHaveLength(1);
  });

  it("a host restarted at once that retries the dead one's execution id runs it there: the worker asks the dead caller now and stops its execution first (not VALIDATION_ERROR duplicate)", async () => {
    const pool = newPool('retryid');
    await worker(server.url, pool, 2);
    const file = path.join(markers, 'retryid.log');
    const caller = await runningCaller(pool, file, 'job-7');
    caller.kill('SIGKILL');
    await once(caller, 'exit');
    const retried = await host(server.url, pool).execute({ pluginId: BASIC, handlerId: 'echo', input: 'again', executionId: 'job-7' }, { timeoutMs: 20_000 });
    expectOk(retried);
    expect(retried.data).toBe('again');
    // The dead host's execution was stopped (its ctx.signal fired), and ran once.
    expect((await marks(file)).some((line) => line.includes(' signal '))).toBe(true);
    expect((await marks(file)).filter((line) => line.endsWith(' started'))).toHaveLength(1);
  });
});

describe('a worker asked to stop (SIGTERM)', () => {
  it('drains: finishes what runs, takes nothing new, then exits 0', async () => {
    const pool = newPool('drain');
    const draining = await worker(server.url, pool);
    const backend = host(server.url, pool);
    const file = path.join(markers, 'drain.log');
    const { result: inFlight } = await startMark(backend, file, 4000);
    const exited = new Promise<number | null>((resolve) => draining.child.once('exit', (code) => resolve(code)));
    draining.child.kill('SIGTERM');
    // Sent while it drains: it must wait for another worker, not go to the draining one.
    const later = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'later' }, { timeoutMs: 30_000 });
    // The host says so while it drains: health(), and the TIMEOUT of one nobody could take.
    await waitFor(async () => ((await backend.health()).problems ?? []).some((p) => p.includes('(1) is draining, taking nothing new')), 3000);
    const untaken = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'untaken' }, { timeoutMs: 300 });
    expectError(untaken, 'TIMEOUT');
    expect(untaken.error.message).toContain('the 1 connected was draining (taking nothing new)');
    const finished = await inFlight;
    expectOk(finished);
    expect(finished.data).toEqual({ done: true });
    expect(await exited).toBe(0);
    const fresh = await worker(server.url, pool);
    const served = await later;
    expectOk(served);
    expect(served.meta.runnerId).toContain(fresh.id);
  });

  it('with its link up, a drain delivers all a handler over still has to send to a host that reads slowly: every log line and the result', async () => {
    const pool = newPool('drainslow');
    const draining = await worker(server.url, pool, 1, 'in-process');
    const backend = host(server.url, pool);
    let lines = 0;
    const spin = (ms: number) => {
      for (const end = performance.now() + ms; performance.now() < end; );
    };
    let ready!: () => void;
    const readyNow = new Promise<void>((resolve) => (ready = resolve));
    const result = backend.execute(
      { pluginId: QUEUE_PROBE, handlerId: 'flood', input: { waitMs: 0, count: 3000, bytes: 1000, afterMs: 0 } },
      { timeoutMs: 60_000, onEvent: () => ready(), onLog: () => void (lines++, spin(2)) },
    );
    await readyNow;
    const exited = new Promise<number | null>((resolve) => draining.child.once('exit', resolve));
    draining.child.kill('SIGTERM');
    const outcome = await result;
    expectOk(outcome);
    expect(outcome.data).toEqual({ logged: 3000 });
    expect(lines).toBe(3000);
    expect(await exited).toBe(0);
  }, 60_000);
});

describe('the NATS server restarting mid-flight', () => {
  it('restarted without its store while tasks wait: the callers may send them again under the same ids at once, and the host never takes the new tasks off the stream for the old', async () => {
    const own = await ownServer();
    const pool = newPool('retrysame');
    const backend = host(own.url, pool);
    const ids = ['retry-a', 'retry-b', 'retry-c'];
    // No worker yet: they wait in the (memory) stream, at sequences 1 to 3.
    const waiting = ids.map((executionId) => backend.execute({ pluginId: BASIC, handlerId: 'echo', input: executionId, executionId }, { timeoutMs: 60_000 }));
    await waitFor(async () => ((await backend.stats()).runners as QueueRunnerStats).queueDepth === 3, 10_000);
    await own.restart();
    for (const failed of await Promise.all(waiting)) expectError(failed, 'WORKER_CRASHED');
    // Sent again at once, under the same ids: in the new stream, at the same sequences.
    const again = ids.map((executionId) => backend.execute({ pluginId: BASIC, handlerId: 'echo', input: executionId, executionId }, { timeoutMs: 60_000 }));
    await sleep(1000);
    await worker(own.url, pool);
    expect((await Promise.all(again)).map((r) => (r.ok ? r.data : r.error.code))).toEqual(ids);
  }, 90_000);

  it('an execution the restart cost its host, still running on its worker, and a new one sent at once under its id: the new one runs once the old one is over there, and gets its own result', async () => {
    const own = await ownServer();
    const pool = newPool('reuse-lost');
    await worker(own.url, pool, 2);
    const backend = host(own.url, pool);
    let running!: () => void;
    const started = new Promise<void>((resolve) => (running = resolve));
    const lost = backend.execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 2500 }, executionId: 'lost-id' }, { timeoutMs: 20_000, onEvent: () => running() });
    await started;
    await own.restart();
    expectError(await lost, 'WORKER_CRASHED');
    // Before: the old one's report ("its caller no longer waits for it") was taken for the new one's result.
    const again = await backend.execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 100 }, executionId: 'lost-id' }, { timeoutMs: 20_000 });
    expectOk(again);
    expect(again.data).toEqual({ waited: 100 });
  }, 60_000);

  it('an execution sent while the server is down for 7 s is handed over once it is back, and runs', async () => {
    const own = await ownServer({ maxPayload: '8MB' });
    const pool = newPool('outage');
    await worker(own.url, pool);
    const backend = host(own.url, pool, { workerLostMs: 15_000 });
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'before' }));
    const restarted = own.restart({ downtimeMs: 7000 });
    // Sent once the host has seen the connection go (the handover waits up to 10 s for it to come back).
    await waitFor(async () => ((await backend.stats()).runners as { connection?: string }).connection === 'reconnecting', 5000);
    const during = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'during' }, { timeoutMs: 30_000 });
    await restarted;
    expectOk(during);
    expect(during.data).toBe('during');
  });

  it('fails the executions in flight with a clear error (no hang), runs nothing twice, and serves new ones after the reconnect', async () => {
    const own = await ownServer({ maxPayload: '8MB' });
    const pool = newPool('restart');
    await worker(own.url, pool);
    const backend = host(own.url, pool);
    const file = path.join(markers, 'restart.log');
    const { result } = await startMark(backend, file);
    // Behind it (the worker takes one at a time): handed to the server, taken by no worker.
    const waiting = backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'mark', input: { file } }, { timeoutMs: 120_000 });
    await waitFor(async () => (await backend.stats()).active === 2, 5000);
    await own.restart();
    const outcome = await result;
    expectError(outcome, 'WORKER_CRASHED');
    expect(outcome.error.details).toMatchObject({ reason: 'runner-lost' });
    expect(outcome.error.details).not.toHaveProperty('phase');
    expect(outcome.error.message).toMatch(/lost its connection to the NATS server/);
    // Said in its details, as TIMEOUT and ABORTED say it: it never ran, and is safe to send again (before, only its message said so).
    const never = await waiting;
    expectError(never, 'WORKER_CRASHED');
    expect(never.error.details).toMatchObject({ reason: 'runner-lost', phase: 'queued' });
    // New executions succeed once both sides have reconnected (the stream is re-created if it went).
    let after: ExecutionResult | undefined;
    await waitFor(async () => {
      after = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'after restart' }, { timeoutMs: 5000 });
      return after.ok;
    }, 30_000);
    expectOk(after!);
    await sleep(REDELIVERY_WINDOW_MS);
    expect((await marks(file)).filter((line) => line.endsWith(' started'))).toEqual([`${outcome.meta.executionId} started`]);
  });
});

describe('a worker closed while the NATS server is away', () => {
  it('lets go of its connection: the process that embeds it ends by itself, and nothing it does when the server is back can throw there', async () => {
    const own = await startNatsServer();
    let stopped = false;
    cleanups.push(async () => {
      if (!stopped) await own.stop();
    });
    const child = spawn(process.execPath, [path.join(here, 'fixtures', 'close-while-down.mjs'), own.url, fixturePlugins.basic], { env: { PATH: process.env.PATH ?? '' }, stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      await waitFor(() => output.includes('ready'), 15_000);
      await own.stop();
      stopped = true;
      child.stdin.write('close\n');
      // Before: close() resolved with the connection still draining and reconnecting, which kept the
      // process up for as long as the server was away (and a publish on it threw once it was back).
      const ended = await Promise.race([exited, sleep(20_000).then(() => 'still running')]);
      expect(ended, output).toBe(0);
      expect(output).toContain('closed');
    } finally {
      child.kill('SIGKILL');
    }
  });
});

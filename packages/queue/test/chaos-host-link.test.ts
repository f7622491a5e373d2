/**
 * What a caller sees when the link between its host and the server is cut (a TCP proxy between
 * them that stops forwarding): that row of docs/backends/queue.md's failure table.
 */
import path from 'node:path';
import { BASIC, expectError, expectOk, waitFor } from '@kb-labs/plugin-execution-conformance';
import type { QueueRunnerStats } from '@kb-labs/plugin-execution-queue';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { LOST_WITHIN_MS, SLACK_MS, host, markers, marks, server, startMark, stopAfterTest, useChaosKit, worker } from './chaos-kit.js';
import { QUEUE_PROBE, newPool } from './helpers.js';
import { PoolSubjects } from '../src/shared/subjects.js';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.js';

useChaosKit();

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

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

  it("reset again while its reconnection waits for a read of the stream: an execution sent once it is back is not failed for that earlier drop", async () => {
    const pool = newPool('hostreread');
    await worker(server.url, pool);
    const backend = host(proxy.url, pool);
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'connected' }, { timeoutMs: 30_000 }));
    // The host's next read of the stream (every 5 s) goes with its connection: the reconnection waits for that read (its 5 s timeout).
    const resets = proxy.resets();
    proxy.resetOn('STREAM.INFO');
    await waitFor(() => proxy.resets() > resets && proxy.connections() === 1, 20_000);
    // Dropped again meanwhile, and back.
    proxy.reset();
    await waitFor(() => proxy.connections() === 1, 10_000);
    const { result } = await startMark(backend, path.join(markers, 'hostreread.log'), 7000);
    const outcome = await result;
    expectOk(outcome);
  }, 60_000);

  it("reset with its read of the stream: that read's timeout after the reconnection is not taken for the stream's silence (an execution's TIMEOUT says no worker is connected, not that the stream does not answer)", async () => {
    const pool = newPool('hostlostread');
    // Its watch (and with it the stream's read) every 10 s: a silence said after the lost read would stand until the next.
    const backend = host(proxy.url, pool, { heartbeatMs: 10_000, workerLostMs: 30_000 });
    expect((await backend.health()).problems?.join('\n')).toMatch(/no worker of pool/);
    const resets = proxy.resets();
    proxy.resetOn('STREAM.INFO');
    // Back (not asked by health() or stats(): each reads the stream afresh).
    await waitFor(() => proxy.resets() > resets && proxy.connections() === 1, 20_000);
    // Its time limit ends after the lost read timed out (5 s after it went), before the host's next read.
    const unstarted = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'after the reset' }, { timeoutMs: 6500 });
    expectError(unstarted, 'TIMEOUT');
    expect(unstarted.error.message).not.toMatch(/stream does not answer/);
    expect(unstarted.error.message).toMatch(/no worker of pool "[^"]+" is connected/);
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

  it("reset as the server's acknowledgement of a task comes back: the execution fails as never run, and its task, which the server has, leaves the stream once the host's retry confirms it", async () => {
    const pool = newPool('hostackreset');
    const backend = host(proxy.url, pool);
    // Connected, the pool's stream made (no worker: a task would wait in the stream).
    await backend.health();
    proxy.resetOn(`{"stream":"KBEXEC_${pool}"`, 1, true);
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'x' }, { timeoutMs: 60_000 });
    expectError(result, 'WORKER_CRASHED');
    expect(result.error.details).toMatchObject({ reason: 'runner-lost', phase: 'queued' });
    // Its hand-over goes on after the reconnection (one retry, its copy dropped by its msgID): the task it confirms must not wait in the stream for a worker.
    await waitFor(async () => ((await backend.stats()).runners as QueueRunnerStats).queueDepth === 0, 15_000);
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

  it("cut with its tasks waiting in the stream: while a worker passes that host over, each of its tasks comes round once, not every second; when the pass-over ends, one task asks it again, not every free slot; restored, they all run", async () => {
    const pool = newPool('hostcutonce');
    const subjects = new PoolSubjects('kbexec', pool);
    const silentHost = host(proxy.url, pool);
    const count = 40;
    const waiting = Array.from({ length: count }, (_, i) => silentHost.execute({ pluginId: BASIC, handlerId: 'echo', input: i }, { timeoutMs: 90_000 }));
    await waitFor(async () => ((await silentHost.stats()).runners as QueueRunnerStats).queueDepth === count, 10_000);
    // What the worker sends the host, seen from beside it: the server delivers it there too.
    const watcher = await connect({ servers: server.url });
    stopAfterTest(() => watcher.close());
    const jsm = await jetstreamManager(watcher);
    const deliveries = async () => (await jsm.consumers.info(subjects.stream, subjects.consumer)).delivered.consumer_seq;
    let asked = 0;
    let withdrawn = 0;
    watcher.subscribe(subjects.caller('*'), { callback: (_error, msg) => {
      const kind = msg.headers?.get('Kb-Kind');
      if (kind === 'started') asked++;
      else if (kind === 'withdrawn') withdrawn++;
    } });
    await watcher.flush();
    proxy.cut();
    await worker(server.url, pool, 2, 'in-process');
    // Both slots ask it, and hear nothing within 3 s: it is passed over (4 s: 2, then twice as long).
    await waitFor(() => withdrawn >= 2, 20_000);
    expect(asked).toBe(2);
    await sleep(500);
    const deliveredBefore = await deliveries();
    await sleep(1000);
    // Before: each came round every second (a task due again goes ahead of any newer one).
    expect(await deliveries() - deliveredBefore).toBeLessThan(count / 4);
    await waitFor(() => asked > 2, 20_000);
    await sleep(1500);
    // Before: both free slots asked it at once.
    expect(asked).toBe(3);
    proxy.restore();
    const results = await Promise.all(waiting);
    results.forEach((result, i) => {
      expectOk(result);
      expect(result.data).toBe(i);
    });
  }, 120_000);

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
  it('cut, then dropped while health() waits for its ping: the ping failed is not taken for an answer (health() says the server did not answer, not that no worker is connected)', async () => {
    const pool = newPool('hostcutdrop');
    const backend = host(proxy.url, pool);
    expect((await backend.health()).problems?.join('\n')).toMatch(/no worker of pool/);
    proxy.cut();
    try {
      const probing = backend.health();
      await sleep(300);
      proxy.refuse(true);
      proxy.reset();
      const problems = (await probing).problems?.join('\n') ?? '';
      expect(problems).toMatch(/has not answered this host's ping within \d+ ms: the host's link to it may be cut/);
      expect(problems).not.toMatch(/no worker of pool/);
    } finally {
      proxy.refuse(false);
      proxy.restore();
    }
  }, 30_000);
});


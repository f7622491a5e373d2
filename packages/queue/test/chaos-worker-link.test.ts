/**
 * What a caller sees when the link between a worker and the server is cut, slow or reset (a TCP
 * proxy between them): the network rows of docs/backends/queue.md's failure table.
 * Each test has a pool and a proxy of its own.
 */
import { once } from 'node:events';
import path from 'node:path';
import { BASIC, expectError, expectOk, fixturePlugins, waitFor } from '@kb-labs/plugin-execution-conformance';
import type { ExecutionResult } from '@kb-labs/plugin-execution-core';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  LOST_WITHIN_MS, REDELIVERY_WINDOW_MS, SLACK_MS, cleanUp, expectStoppedForSilence, host, markers, marks, server, sleep, startMark, stopAfterTest, useChaosKit, worker,
} from './chaos-kit.js';
import { QUEUE_PLUGIN, QUEUE_PROBE, newPool, startWorker } from './helpers.js';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.js';

useChaosKit();

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

  it("cut while idle: the worker never says the pool's stream does not answer (its reads time out for the link's sake); it says it lost its connection, then that it is back, and takes tasks", async () => {
    const pool = newPool('idlecut');
    const idle = await worker(proxy.url, pool);
    const backend = host(server.url, pool);
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'before' }, { timeoutMs: 30_000 }));
    proxy.cut();
    // Two things race (10-15 s in): nats.js's pings find the link dead (it drops the connection), and
    // the worker's pulls go unanswered, so it reads the stream again, which times out. A worker that
    // then took the read's timeout for the stream's silence said so, while its link was what was gone.
    await waitFor(() => /lost its connection to the NATS server/.test(idle.output()), 45_000);
    expect(idle.output()).not.toMatch(/stream does not answer/);
    const noTasks = idle.output().split('\n').find((line) => line.includes('takes no tasks:'));
    if (noTasks !== undefined) expect(noTasks, idle.output()).toMatch(/does not answer it \(the pool's stream timed out, and a ping went unanswered for a second\): its link to the server may be cut; it tries again$/);
    proxy.restore();
    await waitFor(() => /is connected to the NATS server again/.test(idle.output()), 45_000);
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'after' }, { timeoutMs: 30_000 }));
    expect(idle.output()).not.toMatch(/stream does not answer/);
  }, 150_000);

  /** A worker (drain timeout 0.5 s) running an execution; `fault` on its link, then SIGTERM: how long until it exits, and the caller's result. */
  async function drainAfter(name: string, fault: () => void): Promise<{ exitCode: number | null; exitMs: number; result: ExecutionResult }> {
    const pool = newPool(name);
    const drained = await startWorker({ natsUrl: proxy.url, pool, concurrency: 1, drainMs: 500, plugins: [fixturePlugins.basic, QUEUE_PLUGIN] });
    stopAfterTest(() => drained.stop());
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

  it('cut while a large result crosses, then SIGTERM: the worker exits about a second after its drain timeout too, not five (the parts waiting for answers that cannot come are not waited for)', async () => {
    const pool = newPool('netcutresult');
    const drained = await startWorker({ natsUrl: proxy.url, pool, concurrency: 1, drainMs: 500, plugins: [fixturePlugins.basic, QUEUE_PLUGIN] });
    stopAfterTest(() => drained.stop());
    // A narrow link: the result's 16 parts would take 16 s to cross, and the cut comes early in the transfer.
    proxy.bandwidth(256 * 1024);
    let crossing!: () => void;
    const transferBegun = new Promise<void>((resolve) => (crossing = resolve));
    const result = host(server.url, pool).execute({ pluginId: QUEUE_PROBE, handlerId: 'big-result', input: { returnBytes: 4 * 1024 * 1024 } }, { timeoutMs: 60_000, onEvent: () => crossing() });
    await transferBegun;
    await sleep(300);
    proxy.cut();
    const exited = new Promise<number | null>((resolve) => drained.child.once('exit', resolve));
    const signalledAt = performance.now();
    drained.child.kill('SIGTERM');
    expect(await exited).toBe(0);
    // The drain's 500 ms, the connection's last second, and slack for a loaded machine: under the 6.5 s it took before.
    expect(performance.now() - signalledAt).toBeLessThan(4000);
    expectError(await result, 'WORKER_CRASHED');
    proxy.bandwidth(0);
    proxy.restore();
  });

  it('reset and turned away, its handler stopped by the worker (its caller written off), then SIGTERM: the worker exits without waiting out its drain timeout for a result that cannot go', async () => {
    const pool = newPool('netcutstopped');
    const drained = await startWorker({ natsUrl: proxy.url, pool, concurrency: 1, drainMs: 20_000, plugins: [fixturePlugins.basic, QUEUE_PLUGIN] });
    stopAfterTest(() => drained.stop());
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

  it('a result in parts over a worker link of 256 KiB/s arrives', async () => {
    const pool = newPool('slowresult');
    await worker(proxy.url, pool, 1);
    const backend = host(server.url, pool);
    proxy.bandwidth(256 * 1024);
    // Three parts of 256 KiB at most, ~2.4 s of the link (docs/backends/queue.md: a link of 256 KiB/s works as a fast one):
    // the wait for each part's answer (sent-result.ts) must outlast a part's time on such a link.
    const returnBytes = 600 * 1024;
    const result = await backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'sized', input: { returnBytes } }, { timeoutMs: 30_000 });
    expectOk(result);
    expect(result.data).toHaveLength(returnBytes);
  });

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
    let accepted!: () => void;
    const started = new Promise<void>((resolve) => (accepted = resolve));
    const result = backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'sized', input }, { timeoutMs: 30_000, onStart: () => accepted() });
    // Started (its input follows in parts, ~4 s at this rate), then the host's loop is blocked past
    // workerLostMs. From the worker's start, not from the call: a loaded machine can take longer
    // than a guessed 700 ms to connect and hand the task over, and a loop blocked before that only
    // delays the execution. The moment after it lets the host's answer to the start go out.
    await started;
    await sleep(300);
    await expectStoppedForSilence(result);
    // Its handler never began: safe to send again (docs/errors.md); before, nothing told it from one stopped midway.
    expect(((await result) as { error: { details: unknown } }).error.details).toMatchObject({ phase: 'queued' });
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
    // 1 MB: four parts of 256 KiB, each answered once by the worker with an empty publish to the
    // host's inbox (its only publishes there): the fourth is the last part's answer.
    proxy.resetOn('PUB _INBOX.', 4);
    const before = proxy.toClients();
    // Longer than the 10 s a part waits for its answer, and then two heartbeats.
    const result = await backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'mark', input: { file, ms: 14_000, pad: 'p'.repeat(1_000_000) } }, { timeoutMs: 40_000 });
    expect(proxy.resets()).toBe(1);
    expectOk(result);
    expect(result.data).toEqual({ done: true });
    expect(await marks(file)).toEqual([`${result.meta.executionId} started`]);
    // The worker, which had it all, said so (input-taken): the input crossed once. A reset that
    // came before the last part (the worker asked for it again) or a worker that asks for one it
    // has sends it twice, some 2 MB.
    expect(proxy.toClients() - before).toBeLessThan(1_500_000);
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
    // 40 MB of lines and a 4 s outage: past the default 30 s on a loaded machine (a bound on hanging, not a speed).
  }, 90_000);

  it('an in-process one, which cannot wait: the worker holds at most 16 MiB, and the caller is told how many lines were dropped, beside every line that came', async () => {
    const { lines, notices, count } = await logThroughOutage('in-process');
    expect(notices).toHaveLength(1);
    const dropped = Number(/^(\d+) log line\(s\) and 0 event\(s\) of this execution were not delivered: the worker's connection/.exec(notices[0]!)?.[1]);
    expect(dropped).toBeGreaterThan(0);
    // Every line is accounted for: delivered, or counted in the notice.
    expect(lines.length + dropped).toBe(count);
  }, 90_000);
});


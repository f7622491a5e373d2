/**
 * What a caller sees when a worker, a host or the server fails, with real processes, a real
 * nats-server and real signals: the guarantees of docs/backends/queue.md's failure table (the
 * network's rows are in chaos-worker-link.test.ts and chaos-host-link.test.ts).
 * Each test has a pool (and, where it breaks things, a server) of its own.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BASIC, expectError, expectOk, fixturePlugins, holdEventLoop, waitFor } from '@kb-labs/plugin-execution-conformance';
import type { ExecutionResult } from '@kb-labs/plugin-execution-core';
import type { QueueRunnerStats } from '@kb-labs/plugin-execution-queue';
import { describe, expect, it } from 'vitest';
import { startNatsServer } from '../../../scripts/nats-server.mjs';
import {
  LOST_WITHIN_MS, REDELIVERY_WINDOW_MS, SLACK_MS, embeddingProcess, expectStoppedForSilence, host, markers, marks, ownServer, server, sleep, startMark, stopAfterTest, useChaosKit, worker,
} from './chaos-kit.js';
import { QUEUE_PLUGIN, QUEUE_PROBE, newPool, startWorker } from './helpers.js';

const here = path.dirname(fileURLToPath(import.meta.url));
useChaosKit();

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
    // Lost before any result came: meta still names the worker the execution ran on, as the start said.
    expect(outcome.meta).toMatchObject({ runnerId: expect.stringContaining(doomed.id), runnerHost: os.hostname() });
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
    stopAfterTest(() => first.stop());
    // A caller this patient has its workers beat every 3 s: the first one names nothing yet.
    const backend = host(server.url, pool, { workerLostMs: 9000 });
    const { result } = await startMark(backend, path.join(markers, 'kill9same.log'));
    first.child.kill('SIGKILL');
    const second = await startWorker({ natsUrl: server.url, pool, id, concurrency: 1, plugins: [fixturePlugins.basic, QUEUE_PLUGIN] });
    stopAfterTest(() => second.stop());
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
    // Stopped once the host has heard it idle: one last heard with its slot busy (a presence sent
    // while the echo ran, on a loaded machine) is said to have had no slot, not to hold the task.
    await waitFor(async () => ((await backend.stats()).runners as QueueRunnerStats).workers.some((w) => w.id === frozen.id && w.running === 0), 10_000);
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
    holdEventLoop(7000);
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
    holdEventLoop(4000);
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
    // The flood holds the host's loop for 16 s and more: heartbeats must be answered all through
    // it. 10 s without one is what fails it, not the 3 s a test machine's other lanes can take
    // from a host held in its onLog. The 16 s are 4 × 5,000 lines at 0.8 ms each: the paces (a
    // 256 KiB window is some 130 of these lines) put well under a second of them ahead of a
    // heartbeat, where without them all 16 s would be. 20,000 at 0.2 ms held it as long, for four
    // times the messages to send, carry and read.
    const backend = host(server.url, pool, { workerLostMs: 10_000 });
    const count = 5_000;
    const received: number[] = [0, 0, 0, 0];
    const notices: string[] = [];
    const results = await Promise.all(
      [0, 1, 2, 3].map((i) =>
        backend.execute(
          { pluginId: QUEUE_PROBE, handlerId: 'flood', input: { waitMs: 0, count, bytes: 2000, afterMs: 0 } },
          {
            timeoutMs: 170_000,
            onLog: (entry) => {
              if (entry.level === 'warn') return void notices.push(entry.message);
              received[i]!++;
              // A synchronous log sink: 0.8 ms a line.
              holdEventLoop(0.8);
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
    // 30 s here beside another test run (16 s of it the onLog's own holding), and past 90 s
    // with a third of a core left to the host, its workers and the server.
  }, 180_000);
});


describe('a caller that dies mid-execution', () => {
  /** A caller process (fixtures/caller.mjs) whose `mark` execution has started on a worker (and, with `queued`, that many more wait in the stream). */
  async function runningCaller(pool: string, file: string, executionId?: string, queued?: number): Promise<ChildProcess> {
    const caller = spawn(process.execPath, [path.join(here, 'fixtures', 'caller.mjs')], {
      env: {
        PATH: process.env.PATH ?? '', KB_NATS_URL: server.url, KB_POOL: pool, KB_PLUGIN: QUEUE_PLUGIN, KB_MARK_FILE: file,
        ...(executionId ? { KB_EXECUTION_ID: executionId } : {}), ...(queued ? { KB_QUEUED: String(queued) } : {}),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    caller.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    caller.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    stopAfterTest(async () => caller.kill('SIGKILL'));
    await waitFor(() => output.includes(queued ? 'queued' : 'running'), 30_000).catch(() => {
      throw new Error(`the caller never started its execution${queued ? ` and queued ${queued} more` : ''}:\n${output}`);
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

  it("its tasks still waiting in the stream never run for nobody: they leave it as a worker reaches them, and another host's execution sent after them runs at once", async () => {
    const pool = newPool('orphanq');
    await worker(server.url, pool);
    const file = path.join(markers, 'orphanq.log');
    // Its one running execution holds the worker's one slot: the 200 others wait in the stream.
    const caller = await runningCaller(pool, file, undefined, 200);
    caller.kill('SIGKILL');
    await once(caller, 'exit');
    const other = host(server.url, pool);
    const result = await other.execute({ pluginId: BASIC, handlerId: 'echo', input: 'mine' }, { timeoutMs: 20_000 });
    expectOk(result);
    await waitFor(async () => ((await other.stats()).runners as QueueRunnerStats).queueDepth === 0, 10_000);
    const lines = await marks(file);
    expect(lines.filter((line) => line.endsWith(' started'))).toHaveLength(1);
    expect(lines.some((line) => line.includes(' signal '))).toBe(true);
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
    // Two slots: one left free while it drains, so that taking nothing new is the drain's doing, not a full worker's.
    const draining = await worker(server.url, pool, 2);
    const backend = host(server.url, pool);
    const file = path.join(markers, 'drain.log');
    const { result: inFlight } = await startMark(backend, file, 4000);
    const exited = new Promise<number | null>((resolve) => draining.child.once('exit', (code) => resolve(code)));
    draining.child.kill('SIGTERM');
    // The host says so while it drains: health(), and the TIMEOUT of one nobody could take.
    await waitFor(async () => ((await backend.health()).problems ?? []).some((p) => p.includes('(1) is draining, taking nothing new')), 3000);
    // Sent once it drains (not before it has heard the signal): it must wait for another worker, not go to the draining one.
    const later = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'later' }, { timeoutMs: 30_000 });
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
    // A drain that may wait a minute: the host's onLog holds its loop 6 s over the 3000 lines, and with
    // a third of a core their reading took past the fixture's default 10 s, the worker's exit then
    // taking what was left with it.
    const draining = await startWorker({ natsUrl: server.url, pool, backend: 'in-process', concurrency: 1, drainMs: 60_000, plugins: [fixturePlugins.basic, QUEUE_PLUGIN] });
    stopAfterTest(() => draining.stop());
    const backend = host(server.url, pool);
    let lines = 0;
    let ready!: () => void;
    const readyNow = new Promise<void>((resolve) => (ready = resolve));
    const result = backend.execute(
      { pluginId: QUEUE_PROBE, handlerId: 'flood', input: { waitMs: 0, count: 3000, bytes: 1000, afterMs: 0 } },
      { timeoutMs: 60_000, onEvent: () => ready(), onLog: () => void (lines++, holdEventLoop(2)) },
    );
    await readyNow;
    const exited = new Promise<number | null>((resolve) => draining.child.once('exit', resolve));
    draining.child.kill('SIGTERM');
    const outcome = await result;
    expectOk(outcome);
    expect(outcome.data).toEqual({ logged: 3000 });
    expect(lines).toBe(3000);
    expect(await exited).toBe(0);
  }, 120_000);
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
    stopAfterTest(async () => {
      if (!stopped) await own.stop();
    });
    const { child, said, exited } = embeddingProcess('close-while-down.mjs', [own.url, fixturePlugins.basic]);
    try {
      await waitFor(() => said().includes('ready'), 15_000);
      await own.stop();
      stopped = true;
      child.stdin.write('close\n');
      // Before: close() resolved with the connection still draining and reconnecting, which kept the
      // process up for as long as the server was away (and a publish on it threw once it was back).
      const ended = await Promise.race([exited, sleep(20_000).then(() => 'still running')]);
      expect(ended, said()).toBe(0);
      expect(said()).toContain('closed');
    } finally {
      child.kill('SIGKILL');
    }
  });
});

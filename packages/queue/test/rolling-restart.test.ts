/**
 * A worker restarted (SIGTERM: a drain) while its pool is busy: docs/backends/queue.md's "Running
 * workers" (a drain takes nothing new, finishes what runs), with real worker processes, a real
 * nats-server and a TCP proxy on the draining worker's link.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { BASIC, expectOk, fixturePlugins } from '@kb-labs/plugin-execution-conformance';
import type { ExecutionResult } from '@kb-labs/plugin-execution-core';
import type { QueueBackend } from '@kb-labs/plugin-execution-queue';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { host, markers, server, sleep, stopAfterTest, useChaosKit, worker } from './chaos-kit.js';
import { QUEUE_PLUGIN, QUEUE_PROBE, newPool, startWorker } from './helpers.js';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.js';

useChaosKit();

/** A `mark` that runs until `release` exists; resolves once its handler has started on a worker. */
async function runUntilReleased(backend: QueueBackend, name: string, release: string): Promise<{ result: Promise<ExecutionResult> }> {
  let running!: () => void;
  const started = new Promise<void>((resolve) => (running = resolve));
  const result = backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'mark', input: { file: path.join(markers, `${name}.log`), release } }, { timeoutMs: 60_000, onEvent: () => running() });
  await started;
  return { result };
}

describe('a worker that drains with a pull request still open at the server', () => {
  let proxy: TcpProxy;

  beforeAll(async () => {
    proxy = await startTcpProxy(Number(new URL(server.url).port));
  });
  afterAll(() => proxy?.close());

  it('hands back a task the server gave that request before it heard of the drain: another worker runs it, not after the ack wait (5 s)', async () => {
    const pool = newPool('drainpull');
    const release = path.join(markers, 'drainpull-release');
    const other = await worker(server.url, pool);
    const backend = host(server.url, pool);
    // The other worker's one slot busy, and one of the draining worker's two: its free slot's pull
    // request is the only one open at the server.
    const { result: otherBusy } = await runUntilReleased(backend, 'drainpull-other', release);
    const draining = await startWorker({ natsUrl: proxy.url, pool, concurrency: 2, plugins: [fixturePlugins.basic, QUEUE_PLUGIN] });
    stopAfterTest(() => draining.stop());
    const { result: drainingBusy } = await runUntilReleased(backend, 'drainpull-draining', release);
    const exited = new Promise<number | null>((resolve) => draining.child.once('exit', resolve));
    // Its link held (nothing lost, nothing through): it drains and stops listening, and the server,
    // which has not heard so yet, gives its open request the task sent now.
    proxy.cut();
    draining.child.kill('SIGTERM');
    await sleep(1000);
    const handedOver = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'handed over' }, { timeoutMs: 4000 });
    await sleep(300);
    proxy.restore();
    await writeFile(release, '');
    // Before: the draining worker dropped it unanswered, and it waited out the consumer's ack wait
    // (5 s) for the other worker, free by then: TIMEOUT.
    const outcome = await handedOver;
    expectOk(outcome);
    expect(outcome.meta.runnerId).toContain(other.id);
    // What both ran when the drain began finishes.
    expectOk(await otherBusy);
    expectOk(await drainingBusy);
    expect(await exited).toBe(0);
  });
});

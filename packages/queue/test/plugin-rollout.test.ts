/**
 * A plugin's new version deployed to workers one at a time while the host still calls the old
 * one: docs/backends/queue.md's failure table ("plugin … another version there"), with real worker
 * processes, a real nats-server and a TCP proxy on one worker's link.
 */
import { cp, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fixturePlugins } from '@kb-labs/plugin-execution-conformance';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { host, markers, server, sleep, stopAfterTest, useChaosKit } from './chaos-kit.js';
import { QUEUE_PLUGIN, QUEUE_PROBE, newPool, startWorker } from './helpers.js';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.js';

useChaosKit();

describe('a worker of the new version started while a busy worker of the host\'s version is far away', () => {
  let proxy: TcpProxy;

  beforeAll(async () => {
    proxy = await startTcpProxy(Number(new URL(server.url).port));
  });
  afterAll(() => proxy?.close());

  it('hands back the tasks waiting for that worker, as the upgraded workers that heard it do, rather than failing them as a version mismatch', async () => {
    const pool = newPool('rollout-fresh');
    const upgraded = path.join(markers, 'rollout-fresh-v2');
    await cp(QUEUE_PLUGIN, upgraded, { recursive: true });
    const manifest = path.join(upgraded, 'kb.plugin.json');
    await writeFile(manifest, (await readFile(manifest, 'utf8')).replace('"version": "1.0.0"', '"version": "2.0.0"'));
    // The one worker still on the host's version, one slot, 200 ms away (each way) from the server.
    const current = await startWorker({ natsUrl: proxy.url, pool, concurrency: 1, plugins: [fixturePlugins.basic, QUEUE_PLUGIN] });
    stopAfterTest(() => current.stop());
    const first = await startWorker({ natsUrl: server.url, pool, concurrency: 1, plugins: [fixturePlugins.basic, upgraded] });
    stopAfterTest(() => first.stop());
    const backend = host(server.url, pool, { workerLostMs: 6000 });
    proxy.latency(200);
    // Ten tasks of 1 s for the one slot: the upgraded worker hands the waiting ones back, over and over.
    const file = path.join(markers, 'rollout-fresh.log');
    const results = Array.from({ length: 10 }, () => backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'mark', input: { file, ms: 1000 } }, { timeoutMs: 40_000 }));
    await sleep(2000);
    const fresh = await startWorker({ natsUrl: server.url, pool, concurrency: 4, plugins: [fixturePlugins.basic, upgraded] });
    stopAfterTest(() => fresh.stop());
    // Before: the worker just started took some of them before the far worker's presence reached
    // it, and failed them (VALIDATION_ERROR, plugin-version-mismatch) while that worker served on.
    const outcomes = await Promise.all(results);
    expect(outcomes.map((r) => (r.ok ? r.meta.runnerId : `${r.error.code}: ${r.error.message}`))).toEqual(outcomes.map(() => current.id));
    proxy.latency(0);
  }, 60_000);
});

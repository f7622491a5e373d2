// A worker closed while it asks a silent caller to start a task, its own link cut (a half-open
// link): close() closes the connection under that ask, which fails then, and the worker hands the
// task back as it does for any ask that fails, without taking itself for broken.
import { BASIC, fixturePlugins, waitFor } from '@kb-labs/plugin-execution-conformance';
import { QueueBackend, startExecutionWorker } from '@kb-labs/plugin-execution-queue';
import { afterAll, expect, it } from 'vitest';
import { newPool, testServer } from './helpers.js';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.js';

const nats = testServer();
const closing: Array<() => Promise<unknown>> = [];

afterAll(async () => {
  for (const close of closing.reverse()) await close();
});

it('a worker closed over a cut link while it asks a silent caller to start a task says nothing of failing in itself', async () => {
  const pool = newPool('close-while-asking');
  const port = Number(new URL(nats.url).port);
  const proxies: TcpProxy[] = [await startTcpProxy(port), await startTcpProxy(port)];
  const [hostLink, workerLink] = proxies;
  closing.push(() => Promise.all(proxies.map((proxy) => proxy.close())));
  const warnings: Array<{ code?: string; message: string }> = [];
  const listener = (warning: Error & { code?: string }) => void warnings.push({ code: warning.code, message: warning.message });
  process.on('warning', listener);
  closing.push(async () => void process.off('warning', listener));
  // A task waits in the stream for a worker; then its caller goes silent (its link cut).
  const host = new QueueBackend({ connection: { servers: hostLink!.url }, pool, plugins: [fixturePlugins.basic], workerLostMs: 10_000 });
  closing.push(() => host.shutdown({ timeoutMs: 1000 }));
  const stop = new AbortController();
  closing.push(async () => stop.abort());
  void host.execute({ pluginId: BASIC, handlerId: 'echo', input: 'x' }, { timeoutMs: 30_000, signal: stop.signal });
  await waitFor(async () => (await nats.jsm.streams.info(`KBEXEC_${pool}`).catch(() => undefined))?.state.messages === 1, 10_000);
  hostLink!.cut();
  const worker = await startExecutionWorker({ connection: { servers: workerLink!.url }, pool, plugins: [fixturePlugins.basic], backend: { type: 'in-process' }, concurrency: 1 });
  // Asking its silent caller (up to 5 s): then the worker's own link is cut, and it closes.
  await waitFor(() => worker.running === 1, 10_000);
  workerLink!.cut();
  await worker.close();
  await waitFor(() => worker.running === 0, 10_000);
  expect(warnings.filter((warning) => warning.code === 'KB_PLUGIN_WORKER_INTERNAL')).toEqual([]);
}, 30_000);

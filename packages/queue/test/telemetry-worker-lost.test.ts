/**
 * The runner counters on a queue host (docs/observability.md): its runners are the pool's
 * workers, so a worker killed with three executions running is one runner started and one
 * crashed, not three. Real SDK in the host, a real worker process, a real nats-server.
 */
import { BASIC, fixturePlugins, installTestSdk, waitFor, type TestSdk } from '@kb-labs/plugin-execution-conformance';
import { QueueBackend, type QueueRunnerStats } from '@kb-labs/plugin-execution-queue';
import { afterEach, expect, it } from 'vitest';
import { natsServer, newPool, startWorker } from './helpers.js';

let sdk: TestSdk | undefined;
const closing: Array<() => Promise<unknown>> = [];

afterEach(async () => {
  await Promise.all(closing.splice(0).map((close) => close()));
  await sdk?.uninstall();
  sdk = undefined;
});

const total = (points: Array<{ attributes: Record<string, unknown>; value: unknown }>) => points.reduce((sum, point) => sum + Number(point.value), 0);

it('a worker killed with three executions running counts one runner crash (runner-lost), as it counted one start', async () => {
  sdk = installTestSdk();
  const server = await natsServer();
  closing.push(() => server.stop());
  const pool = newPool('otel-lost');
  const worker = await startWorker({ natsUrl: server.url, pool, backend: 'in-process', concurrency: 3, plugins: [fixturePlugins.basic] });
  closing.push(() => worker.stop());
  const backend = new QueueBackend({ connection: { servers: server.url }, pool, plugins: [fixturePlugins.basic], workspace: false, workerLostMs: 1000 });
  closing.push(() => backend.shutdown({ timeoutMs: 2000 }));
  const results = [1, 2, 3].map(() => backend.execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 60_000 } }, { timeoutMs: 30_000 }));
  await waitFor(async () => ((await backend.stats()).runners as QueueRunnerStats).started === 3, 20_000);
  worker.child.kill('SIGKILL');
  const ended = await Promise.all(results);
  expect(ended.map((result) => (result.ok ? 'ok' : `${result.error.code} ${String((result.error.details as { reason?: string } | undefined)?.reason)}`))).toEqual(Array(3).fill('WORKER_CRASHED runner-lost'));
  const starts = total(await sdk.points('kb.plugin_execution.runner.starts'));
  const crashes = await sdk.points('kb.plugin_execution.runner.crashes');
  // Before: starts 1, crashes 3 (one per execution it ran).
  expect({ starts, crashes: total(crashes), reasons: crashes.map((point) => point.attributes['kb.plugin_execution.crash.reason']) }).toEqual({ starts: 1, crashes: 1, reasons: ['runner-lost'] });
}, 60_000);

import { describeConformance } from '@kb-labs/plugin-execution-conformance';
import { QueueBackend } from '@kb-labs/plugin-execution-queue';
import { afterAll, beforeAll } from 'vitest';
import { natsServer, newPool, startWorkers, type WorkerProcess } from './helpers.js';

// Two real worker processes on the subprocess backend (bubblewrap where it runs): each execution
// crosses NATS to one of them and runs in a child process there, so the whole suite applies, with
// the workspace on the worker.
const pool = newPool('conformance');
let server: { url: string; stop(): Promise<void> } | undefined;
let workers: WorkerProcess[] = [];

beforeAll(async () => {
  server = await natsServer();
  workers = await startWorkers(2, { natsUrl: server.url, pool, backend: 'subprocess', concurrency: 6 });
}, 60_000);

afterAll(async () => {
  await Promise.all(workers.map((w) => w.stop()));
  await server?.stop();
});

describeConformance('queue', (options) => new QueueBackend({ connection: { servers: server!.url }, pool, ...options }), {
  preemptsSyncCode: true,
  isolatesCrashes: true,
  isolatesGlobals: true,
  sandboxesFs: true,
  workspaceOnRunner: true,
  runsHostPlugins: false,
  remoteRunners: true,
});

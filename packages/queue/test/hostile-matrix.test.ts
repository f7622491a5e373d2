import { describeHostileMatrix } from '@kb-labs/plugin-execution-conformance/hostile-matrix';
import { QueueBackend } from '@kb-labs/plugin-execution-queue';
import { afterAll, beforeAll } from 'vitest';
import { natsServer, newPool, startWorkers, type WorkerProcess } from './helpers.js';

// The queue column: two worker processes on the subprocess backend (bubblewrap where it runs).
// A worker's local options are its own, so the `/proc` read one row grants its subprocess
// backend is given to these workers for every row.
const pool = newPool('hostile');
let server: { url: string; stop(): Promise<void> } | undefined;
let workers: WorkerProcess[] = [];

beforeAll(async () => {
  server = await natsServer();
  workers = await startWorkers(2, { natsUrl: server.url, pool, backend: 'subprocess', backendOptions: { allowRead: ['/proc'] }, concurrency: 2 });
}, 60_000);

afterAll(async () => {
  await Promise.all(workers.map((w) => w.stop()));
  await server?.stop();
});

describeHostileMatrix('queue', (options) => new QueueBackend({ connection: { servers: server!.url }, pool, ...options }));

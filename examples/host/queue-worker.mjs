// One worker of the demo's queue pool: runs the example plugins on its own worker-pool backend,
// prints "ready <id>" once it takes executions, and drains on SIGTERM or when the demo that
// started it goes (its IPC channel closes).
import { startExecutionWorker } from '@kb-labs/plugin-execution';

const env = process.env;
const worker = await startExecutionWorker({
  connection: { servers: env.KB_NATS_URL },
  pool: env.KB_POOL,
  plugins: env.KB_PLUGINS.split(','),
  backend: { type: 'worker-pool', maxThreads: 2 },
  platform: {},
  concurrency: 2,
});
const stop = () => void worker.drain({ timeoutMs: 5000 }).then(() => process.exit(0));
process.once('SIGTERM', stop);
process.once('disconnect', stop);
process.stdout.write(`ready ${worker.id}\n`);

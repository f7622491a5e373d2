// One worker of the demo's queue pool: runs the example plugins on its own worker-pool backend,
// prints "ready <id>" once it takes executions, and drains on SIGTERM.
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
process.once('SIGTERM', () => void worker.drain({ timeoutMs: 5000 }).then(() => process.exit(0)));
process.stdout.write(`ready ${worker.id}\n`);

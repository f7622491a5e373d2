// The queue backend with two worker processes, on a nats-server of its own (or KB_NATS_URL's):
// the same executions as on a local backend, and which worker ran each.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createExecutionBackend } from '@kb-labs/plugin-execution';
import { NATS_SERVER_INSTALL_HINT, natsServerAvailable, startNatsServer } from '../../scripts/nats-server.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const plugins = ['hello', 'toolbox'].map((name) => path.resolve(here, '..', 'plugins', name));

if (!process.env.KB_NATS_URL && !natsServerAvailable()) {
  console.log(`skipped: no nats-server here. ${NATS_SERVER_INSTALL_HINT}; or set KB_NATS_URL to a server of yours.`);
} else {
  await demo();
}

async function demo() {
  const server = process.env.KB_NATS_URL ? undefined : await startNatsServer();
  const url = process.env.KB_NATS_URL ?? server.url;
  const pool = `demo-${randomBytes(3).toString('hex')}`;
  const workers = await Promise.all([0, 1].map(() => startWorker(url, pool)));
  console.log(`workers ready: ${workers.map((w) => w.id).join(', ')}`);
  const backend = createExecutionBackend({ type: 'queue', connection: { servers: url }, pool, plugins });
  try {
    const runs = [
      ['hello', 'greet', { name: 'Ada' }],
      ['hello', 'count-words', { text: 'one worker or another' }],
      ['hello', 'fail', undefined],
      ['toolbox', 'hash', { ms: 30 }],
      ['hello', 'greet', { name: 'Grace' }],
      ['hello', 'greet', { name: '' }],
    ];
    const results = await Promise.all(runs.map(([plugin, handlerId, input]) => backend.execute({ pluginId: `@examples/${plugin}`, handlerId, input })));
    for (const [i, result] of results.entries()) {
      const outcome = result.ok ? `ok ${JSON.stringify(result.data).slice(0, 50)}` : `${result.error.code}: ${result.error.message.split('\n')[0].slice(0, 50)}`;
      console.log(`${`${runs[i][0]}/${runs[i][1]}`.padEnd(20)} ${outcome.padEnd(62)} on ${result.meta.runnerId ?? '-'} (${result.meta.durationMs.toFixed(1)} ms)`);
    }
    const stats = await backend.stats();
    console.log(`workers seen: ${stats.runners.workersSeen}; by outcome ${JSON.stringify(stats.byOutcome)}`);
  } finally {
    await backend.shutdown();
    await Promise.all(workers.map((w) => w.stop()));
    await server?.stop();
  }
}

/**
 * A worker process (explicit environment), resolved once it says it is ready. Its IPC channel
 * closes when this process dies, however it dies (killed midway, SIGKILL included): the worker
 * then drains and exits rather than staying behind.
 */
async function startWorker(url, pool) {
  const child = spawn(process.execPath, [path.join(here, 'queue-worker.mjs')], {
    env: { PATH: process.env.PATH ?? '', KB_NATS_URL: url, KB_POOL: pool, KB_PLUGINS: plugins.join(',') },
    stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const id = await new Promise((resolve, reject) => {
    let output = '';
    child.stdout.on('data', (chunk) => (output += chunk) && /ready (\S+)/.test(output) && resolve(/ready (\S+)/.exec(output)[1]));
    child.once('exit', (code) => reject(new Error(`a demo worker exited (${code}) before it was ready`)));
  });
  return {
    id,
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

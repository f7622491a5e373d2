// Echo through a channel (client frame → handler execution → reply frame) against a raw ws echo
// server, on one loopback connection: pipelined msgs/s and sequential round-trip p50.
// Run: `node scripts/bench.mjs channels` after building (`pnpm build`). Loopback only, bounded loops.
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { WebSocket, WebSocketServer } from 'ws';
import { mountWebSocketChannels } from '../dist/index.js';
import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';
import { heading, percentile, report } from '../../../scripts/bench-report.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const pluginDir = path.join(here, 'fixtures/echo');
const manifest = JSON.parse(await readFile(path.join(pluginDir, 'kb.plugin.json'), 'utf8'));

/** Pipelined: keep `window` messages outstanding until `n` replies are back. */
async function throughput(url, { n, window, waitReady }) {
  const ws = await connect(url, waitReady);
  const payload = (i) => JSON.stringify({ id: i, data: { n: i, text: 'hello channel' } });
  const rate = await new Promise((resolve, reject) => {
    let sent = 0;
    let received = 0;
    const t0 = performance.now();
    ws.on('message', () => {
      received++;
      if (received === n) resolve(n / ((performance.now() - t0) / 1000));
      else if (sent < n) ws.send(payload(sent++));
    });
    ws.once('close', () => reject(new Error(`closed after ${received} replies`)));
    while (sent < Math.min(window, n)) ws.send(payload(sent++));
  });
  ws.removeAllListeners('close');
  ws.close();
  return rate;
}

/** Sequential: one message, wait for its reply, repeat; milliseconds per round trip. */
async function roundTrips(url, { n, warmup, waitReady }) {
  const ws = await connect(url, waitReady);
  let resolveReply;
  ws.on('message', () => resolveReply());
  const samples = new Float64Array(n);
  for (let i = -warmup; i < n; i++) {
    const reply = new Promise((r) => (resolveReply = r));
    const t = performance.now();
    ws.send(JSON.stringify({ id: i, data: { n: i, text: 'hello channel' } }));
    await reply;
    if (i >= 0) samples[i] = performance.now() - t;
  }
  ws.close();
  return samples;
}

async function connect(url, waitReady) {
  const ws = new WebSocket(url);
  // Listen before 'open' resolves: on loopback the ready frame can arrive in the same tick.
  const ready = waitReady ? once(ws, 'message') : undefined; // the channel's { type: 'ready' } frame
  await once(ws, 'open');
  await ready;
  return ws;
}

async function listen(server) {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return server.address().port;
}

async function rawEchoServer() {
  const server = http.createServer();
  const wss = new WebSocketServer({ server, perMessageDeflate: false });
  wss.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
  const port = await listen(server);
  return {
    url: `ws://127.0.0.1:${port}/`,
    close: async () => {
      for (const client of wss.clients) client.terminate();
      wss.close();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

async function channelServer(backend) {
  const server = http.createServer();
  mountWebSocketChannels(server, manifest, { backend, maxInFlightPerConnection: WINDOW });
  const port = await listen(server);
  return {
    url: `ws://127.0.0.1:${port}/echo`,
    close: async () => {
      await backend.shutdown(); // also unmounts the channel
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

const backendOptions = { plugins: [pluginDir], workspace: false };
const WINDOW = 64;
const ROUNDS = 5;

function median(values) {
  return [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
}

/** Median of ROUNDS pipelined runs per server, alternating servers so drifting machine load hits all alike. */
async function rates(servers, n) {
  const out = servers.map(() => []);
  for (const s of servers) await throughput(s.url, { n: Math.min(2000, n), window: WINDOW, waitReady: s.waitReady }); // warm up
  for (let round = 0; round < ROUNDS; round++) {
    for (const [i, s] of servers.entries()) out[i].push(await throughput(s.url, { n, window: WINDOW, waitReady: s.waitReady }));
  }
  return out.map(median);
}

heading(`channels: echo on one connection (msgs/s: median of ${ROUNDS} pipelined runs, window ${WINDOW}; round trip: sequential)`);
const raw = { ...(await rawEchoServer()), waitReady: false };
const inProcess = { ...(await channelServer(new InProcessBackend(backendOptions))), waitReady: true };
const [rawRate, ipRate] = await rates([raw, inProcess], 20_000);
const rawRtt = await roundTrips(raw.url, { n: 2000, warmup: 300, waitReady: false });
const ipRtt = await roundTrips(inProcess.url, { n: 2000, warmup: 300, waitReady: true });
await raw.close();
await inProcess.close();
report('raw ws echo: msgs/s', rawRate, 'msg/s');
report('raw ws echo: round trip p50', percentile(rawRtt, 0.5), 'ms');
report('channel echo, in-process: msgs/s', ipRate, 'msg/s');
report('channel echo, in-process: round trip p50', percentile(ipRtt, 0.5), 'ms');
report('channel echo, in-process: round trip p99', percentile(ipRtt, 0.99), 'ms');
report('channel echo, in-process / raw ws echo (msgs/s)', ipRate / rawRate, 'x', { op: '>=', value: 0.5 });

let WorkerPoolBackend;
try {
  ({ WorkerPoolBackend } = await import('@kb-labs/plugin-execution-worker-pool'));
} catch (error) {
  if (!process.argv.includes('--json')) process.stdout.write(`  (worker-pool half skipped, package not built: ${String(error.message).split('\n')[0]})\n`);
}
if (WorkerPoolBackend) {
  const pool = { ...(await channelServer(new WorkerPoolBackend(backendOptions))), waitReady: true };
  const [wpRate] = await rates([pool], 5000);
  const wpRtt = await roundTrips(pool.url, { n: 1000, warmup: 200, waitReady: true });
  await pool.close();
  report('channel echo, worker-pool: msgs/s', wpRate, 'msg/s');
  report('channel echo, worker-pool: round trip p50', percentile(wpRtt, 0.5), 'ms');
  report('channel echo, worker-pool: round trip p99', percentile(wpRtt, 0.99), 'ms');
  report('channel echo, worker-pool / raw ws echo (msgs/s)', wpRate / rawRate, 'x');
}

// A message a peer on the pool's account forged whose header value holds a lone line feed: a client
// that writes the protocol itself (not nats.js, which refuses such a value) can send one, and the
// server passes it on (and a stream stores it). nats.js decodes a message's headers when they are
// first read and throws on that value; thrown in a subscription's callback, it ended the
// connection's reader for good ("reader closed"): the connection stayed up and read nothing more.
// A forged task did that to the worker that pulled it (and, redelivered, to the next); a forged
// message to a host's subject did it to the host: neither ran an execution again.
import net from 'node:net';
import { BASIC, expectOk, fixturePlugins } from '@kb-labs/plugin-execution-conformance';
import { QueueBackend, startExecutionWorker } from '@kb-labs/plugin-execution-queue';
import { afterEach, expect, it } from 'vitest';
import { newPool, testServer } from './helpers.js';

const nats = testServer();
const closing: Array<() => Promise<unknown>> = [];
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

afterEach(async () => {
  await Promise.all(closing.splice(0).map((close) => close()));
});

/** A host of a fresh pool and its worker, the host's subject (as anyone who sees its tasks learns it) once an execution ran. */
async function poolWithHost(name: string) {
  const pool = newPool(name);
  const worker = await startExecutionWorker({ connection: { servers: nats.url }, pool, plugins: [fixturePlugins.basic], backend: { type: 'in-process' }, concurrency: 2 });
  closing.push(() => worker.close());
  let closed = false;
  void worker.closed.then(() => (closed = true));
  const backend = new QueueBackend({ connection: { servers: nats.url }, pool, plugins: [fixturePlugins.basic] });
  closing.push(() => backend.shutdown({ timeoutMs: 2000 }));
  let caller = '';
  const onTasks = nats.nc.subscribe(`kbexec.${pool}.tasks`, { callback: (_error, msg) => void (caller ||= msg.headers?.get('Kb-Reply') ?? '') });
  expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }, { timeoutMs: 20_000 }));
  onTasks.unsubscribe();
  return { pool, backend, caller, closed: () => closed };
}

/** Publishes `subject` with raw header lines, as a client of its own writes them, and waits for the server's PONG. */
async function publishRaw(url: string, subject: string, headerLines: string[]): Promise<void> {
  const { hostname, port } = new URL(url);
  const socket = net.connect(Number(port), hostname);
  let seen = '';
  await new Promise<void>((resolve, reject) => {
    socket.on('error', reject);
    socket.on('data', (chunk) => {
      seen += chunk.toString('latin1');
      if (seen.includes('PONG')) resolve();
      if (seen.includes('-ERR')) reject(new Error(seen));
    });
    const header = `NATS/1.0\r\n${headerLines.join('\r\n')}\r\n\r\n`;
    const length = Buffer.byteLength(header);
    socket.write(`CONNECT {"verbose":false,"pedantic":false,"headers":true,"protocol":1}\r\nHPUB ${subject} ${length} ${length}\r\n${header}\r\nPING\r\n`);
  }).finally(() => socket.destroy());
}

it('a task whose header holds a lone line feed is removed unasked: the worker that pulled it still takes tasks', async () => {
  const { pool, backend, caller, closed } = await poolWithHost('task-newline');
  const warnings: string[] = [];
  const onWarning = (warning: Error & { code?: string }) => void (warning.code?.startsWith('KB_PLUGIN_WORKER') && warnings.push(warning.code));
  process.on('warning', onWarning);
  try {
    await publishRaw(nats.url, `kbexec.${pool}.tasks`, [`Kb-Reply: ${caller}`, 'Kb-Exec-Id: forged\nid', 'Kb-Lost-Ms: 3000', 'Kb-Protocol: 1', 'Nats-Msg-Id: forged-newline']);
    await sleep(3000);
  } finally {
    process.off('warning', onWarning);
  }
  const left = (await nats.jsm.streams.info(`KBEXEC_${pool}`)).state.messages;
  // Before: the task left in the stream (never acknowledged), and the next execution a TIMEOUT: "no worker took it".
  expect({ closed: closed(), warnings, left }).toEqual({ closed: false, warnings: [], left: 0 });
  const next = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'still served' }, { timeoutMs: 10_000 });
  expectOk(next);
  expect(next.data).toBe('still served');
}, 60_000);

it("a message to a host whose header holds a lone line feed is dropped: the host still hears its workers", async () => {
  const { backend, caller } = await poolWithHost('host-newline');
  await publishRaw(nats.url, caller, ['Kb-Kind: heartbeat', 'Kb-Exec-Id: forged\nid']);
  // Before: TIMEOUT, the worker's `started` never read by the host ("reader closed" on its connection).
  const next = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'still served' }, { timeoutMs: 10_000 });
  expectOk(next);
  expect(next.data).toBe('still served');
}, 60_000);

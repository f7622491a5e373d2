// A task a peer on the pool's account forged whose execution id (Kb-Exec-Id) or task id
// (Nats-Msg-Id) is longer than any host's (128 characters, and its nonce): the worker's `started`,
// which carries both, was over the server's max_payload though the task was not. The publish threw;
// the `withdrawn` that followed, carrying the id, threw out of the claim, and the worker took itself
// for broken (KB_PLUGIN_WORKER_INTERNAL): it drained and closed, and the task, never handed back,
// went to the next worker after the consumer's ack wait. With a long task id alone, `started` went
// in parts, which the host it named dropped: the worker took that for the host's silence and passed
// it over, and the task, handed back, asked first again each time: none of that host's tasks ran.
import { BASIC, expectOk, fixturePlugins } from '@kb-labs/plugin-execution-conformance';
import type { ExecutionResult } from '@kb-labs/plugin-execution-core';
import { MAX_EXECUTION_ID_LENGTH } from '@kb-labs/plugin-execution-core/backend-kit';
import { QueueBackend, startExecutionWorker } from '@kb-labs/plugin-execution-queue';
import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { startNatsServer } from '../../../scripts/nats-server.mjs';
import { newPool } from './helpers.js';

let server: Awaited<ReturnType<typeof startNatsServer>>;
let nc: NatsConnection;
const closing: Array<() => Promise<unknown>> = [];
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

beforeAll(async () => {
  // A max_payload under JetStream's bound on a message's headers (64 KiB): forged ids fill a task of it.
  server = await startNatsServer({ maxPayload: '32KB' });
  nc = await connect({ servers: server.url });
}, 60_000);

afterAll(async () => {
  await nc?.close();
  await server?.stop();
});

afterEach(async () => {
  await Promise.all(closing.splice(0).map((close) => close()));
});

/** A task with no body for `caller` whose headers fill the server's max_payload, `fill` naming the header filled. */
async function forgeLongTask(pool: string, caller: string, fill: 'Kb-Exec-Id' | 'Nats-Msg-Id'): Promise<void> {
  const given: Record<string, string> = { 'Kb-Reply': caller, 'Kb-Exec-Id': 'forged-long', [fill]: '' };
  // As nats.js writes them: a status line, `Name: value` lines, an empty line.
  const headerBytes = 'NATS/1.0\r\n'.length + Object.entries(given).reduce((n, [name, value]) => n + name.length + value.length + 4, 0) + 2;
  given[fill] = 'i'.repeat(nc.info!.max_payload - headerBytes);
  const h = headers();
  for (const [name, value] of Object.entries(given)) h.set(name, value);
  const stored = await nc.request(`kbexec.${pool}.tasks`, new Uint8Array(0), { headers: h, timeout: 5000 });
  expect(JSON.parse(new TextDecoder().decode(stored.data))).not.toHaveProperty('error');
}

/**
 * A worker and a host of a fresh pool, a task filling `fill` forged in the host's name (its caller
 * subject, as anyone who sees its tasks learns it), and what became of them 3 s on; then the host's
 * next execution.
 */
async function afterForged(fill: 'Kb-Exec-Id' | 'Nats-Msg-Id'): Promise<{ after: Record<string, unknown>; next: ExecutionResult }> {
  const pool = newPool('long-ids');
  // An id of its own: the worker's messages are as long on every machine.
  const worker = await startExecutionWorker({ connection: { servers: server.url }, pool, plugins: [fixturePlugins.basic], backend: { type: 'in-process' }, concurrency: 2, id: 'a-worker-of-the-pool' });
  closing.push(() => worker.close());
  let closed = false;
  void worker.closed.then(() => (closed = true));
  const backend = new QueueBackend({ connection: { servers: server.url }, pool, plugins: [fixturePlugins.basic] });
  closing.push(() => backend.shutdown({ timeoutMs: 2000 }));
  let caller = '';
  const onTasks = nc.subscribe(`kbexec.${pool}.tasks`, { callback: (_error, msg) => void (caller ||= msg.headers?.get('Kb-Reply') ?? '') });
  expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }, { timeoutMs: 20_000 }));
  onTasks.unsubscribe();
  const warnings: string[] = [];
  const onWarning = (warning: Error & { code?: string }) => void (warning.code?.startsWith('KB_PLUGIN_WORKER') && warnings.push(warning.code));
  process.on('warning', onWarning);
  try {
    await forgeLongTask(pool, caller, fill);
    await sleep(3000);
  } finally {
    process.off('warning', onWarning);
  }
  const left = (await (await jetstreamManager(nc)).streams.info(`KBEXEC_${pool}`)).state.messages;
  const next = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'still served' }, { timeoutMs: 20_000 });
  return { after: { closed, warnings, left }, next };
}

it("a task whose execution id is longer than a host's is removed unasked: the worker does not take itself for broken and close", async () => {
  const { after, next } = await afterForged('Kb-Exec-Id');
  // Before: closed, KB_PLUGIN_WORKER_INTERNAL ("max_payload size exceeded"), the task left for the next worker.
  expect(after).toEqual({ closed: false, warnings: [], left: 0 });
  expectOk(next);
  expect(next.data).toBe('still served');
}, 60_000);

it("a task whose task id is longer than a host's is removed unasked: the host it names is not passed over as silent, its executions starved", async () => {
  const { after, next } = await afterForged('Nats-Msg-Id');
  // Before: its `started`, in parts, got the host's empty answer to parts of no execution of its, taken
  // for silence: the host was passed over, the task handed back and asking first again, and the
  // host's next execution never started (TIMEOUT).
  expect(after).toEqual({ closed: false, warnings: [], left: 0 });
  expectOk(next);
  expect(next.data).toBe('still served');
}, 60_000);

it("a host's execution whose id is as long as core takes runs: its execution id and task id are a host's, not a forger's", async () => {
  const pool = newPool('longest-id');
  const worker = await startExecutionWorker({ connection: { servers: server.url }, pool, plugins: [fixturePlugins.basic], backend: { type: 'in-process' }, concurrency: 2, id: 'a-worker-of-the-pool' });
  closing.push(() => worker.close());
  const backend = new QueueBackend({ connection: { servers: server.url }, pool, plugins: [fixturePlugins.basic] });
  closing.push(() => backend.shutdown({ timeoutMs: 2000 }));
  const executionId = 'x'.repeat(MAX_EXECUTION_ID_LENGTH);
  const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'longest', executionId }, { timeoutMs: 20_000 });
  expectOk(result);
  expect(result.data).toBe('longest');
  expect(result.meta.executionId).toBe(executionId);
}, 60_000);

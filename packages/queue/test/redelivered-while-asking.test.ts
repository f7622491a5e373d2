// A task delivered again to the worker that still waits for its caller's answer to the first
// delivery's start (the consumer's ack_wait shorter than that wait: set by hand, or a start request
// lost in a reconnection): the caller never heard the first start and accepts the second. What it
// sends for the execution from then on (its cancel) is for the delivery it accepted. The caller
// here is a plain NATS connection that answers as a host does, and never hears the first start.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import { AbortedError, serializeError } from '@kb-labs/plugin-execution-core';
import { startExecutionWorker } from '@kb-labs/plugin-execution-queue';
import { headers, nanos, type Msg } from '@nats-io/transport-node';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { QUEUE_PROBE, QUEUE_PLUGIN, newPool, testServer } from './helpers.js';
import { QUEUE_PROTOCOL_VERSION } from '../src/shared/wire.js';

const nats = testServer();
let markers: string;

beforeAll(async () => {
  markers = await mkdtemp(path.join(os.tmpdir(), 'kb-redelivered-'));
});

afterAll(async () => {
  await rm(markers, { recursive: true, force: true });
});

function withHeaders(values: Record<string, string>): ReturnType<typeof headers> {
  const h = headers();
  for (const [name, value] of Object.entries(values)) h.set(name, value);
  return h;
}

/**
 * A worker of a new pool whose consumer hands a task out again after a second unanswered (not
 * checked by the pool: no value loses a task), and a caller subject answered as a host does, which
 * never hears the first `started` (lost on the way) and accepts the second. `kinds`: what it heard
 * but heartbeats; `send(input, lostMs)`: a task for the probe's `mark` handler, marking `file`.
 */
async function redeliveringPool(name: string) {
  const pool = newPool(name);
  const worker = await startExecutionWorker({ connection: { servers: nats.url }, pool, plugins: [QUEUE_PLUGIN], backend: { type: 'in-process' }, concurrency: 2 });
  await nats.jsm.consumers.update(`KBEXEC_${pool}`, `${pool}-workers`, { ack_wait: nanos(1000) });
  const subject = `kbexec.${pool}.caller.by-hand`;
  const id = `redelivered-${Math.random().toString(16).slice(2)}`;
  const heard = { id, starts: 0, kinds: [] as string[], result: undefined as { ok: boolean; error?: { code?: string } } | undefined };
  const sub = nats.nc.subscribe(subject, {
    callback: (_error, msg: Msg) => {
      const kind = msg.headers?.get('Kb-Kind') ?? '';
      if (kind !== 'heartbeat') heard.kinds.push(kind);
      if (kind === 'started') {
        if (++heard.starts === 2) msg.respond(v8.serialize({ accept: true, remainingMs: 20_000 }));
      } else if (kind === 'heartbeat') msg.respond(v8.serialize({ unknown: [] }));
      else {
        if (kind === 'result') heard.result = v8.deserialize(msg.data);
        if (msg.reply) msg.respond();
      }
    },
  });
  const send = async (input: Record<string, string>, lostMs: number) => {
    const task = { executionId: id, pluginId: QUEUE_PROBE, pluginVersion: '1.0.0', handlerId: 'mark', input, inputFollows: false, context: {}, timeoutMs: 20_000, workspace: false, keepWorkspace: false };
    const taskHeaders = withHeaders({ 'Kb-Kind': 'task', 'Kb-Exec-Id': id, 'Kb-Reply': subject, 'Kb-Lost-Ms': String(lostMs), 'Kb-Protocol': String(QUEUE_PROTOCOL_VERSION) });
    await nats.nc.request(`kbexec.${pool}.tasks`, v8.serialize(task), { headers: taskHeaders, timeout: 5000 });
  };
  const cancel = () => {
    const reason = serializeError(new AbortedError('stopped by its caller', { details: { phase: 'running' } }));
    nats.nc.publish(`kbexec.${pool}.worker.${worker.id}`, v8.serialize({ reason }), { headers: withHeaders({ 'Kb-Kind': 'cancel', 'Kb-Exec-Id': id, 'Kb-Reply': subject }) });
  };
  const close = async () => {
    sub.unsubscribe();
    await worker.close();
  };
  return { worker, heard, send, cancel, close };
}

const marked = async (file: string, id: string) => (await readFile(file, 'utf8').catch(() => '')).includes(`${id} started`);

it("a caller's cancel reaches the delivery of its task that it accepted, while the worker still waits for the answer to an earlier delivery's start", async () => {
  const { heard, send, cancel, close } = await redeliveringPool('redelivered');
  const file = path.join(markers, `${heard.id}.log`);
  try {
    await send({ file }, 5000);
    // The accepted delivery's handler runs; then its caller stops it.
    await expect.poll(() => marked(file, heard.id), { timeout: 15_000, interval: 50 }).toBe(true);
    cancel();
    // Stopped within a few seconds (on a loaded machine), not at the worker's own time limit 21 s on.
    await expect.poll(() => heard.result, { timeout: 8000, interval: 50 }).toBeDefined();
    expect(heard.result).toMatchObject({ ok: false, error: { code: 'ABORTED' } });
    expect((await readFile(file, 'utf8')).trim().split('\n')).toEqual([`${heard.id} started`, `${heard.id} signal ABORTED`]);
    expect(heard.starts).toBe(2);
  } finally {
    await close();
  }
}, 40_000);

it('the earlier delivery, its start unanswered, withdraws nothing once its caller accepted a later delivery of its task here (the caller, which knows a start by its worker alone, would take it for that one)', async () => {
  const { worker, heard, send, close } = await redeliveringPool('redelivered-withdraw');
  const file = path.join(markers, `${heard.id}.log`);
  const release = path.join(markers, `${heard.id}.release`);
  try {
    await send({ file, release }, 3000);
    await expect.poll(() => marked(file, heard.id), { timeout: 15_000, interval: 50 }).toBe(true);
    // The first delivery's ask (3 s, the caller's workerLostMs) runs out while the accepted one runs.
    await expect.poll(() => worker.running, { timeout: 10_000, interval: 50 }).toBe(1);
    await writeFile(release, '');
    await expect.poll(() => heard.result, { timeout: 10_000, interval: 50 }).toBeDefined();
    expect(heard.result).toMatchObject({ ok: true });
    expect(heard.kinds).toEqual(['started', 'started', 'event', 'result']);
  } finally {
    await close();
  }
}, 40_000);

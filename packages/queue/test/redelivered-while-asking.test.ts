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
import { connect, headers, nanos, type Msg, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { QUEUE_PROBE, QUEUE_PLUGIN, natsServer, newPool } from './helpers.js';
import { QUEUE_PROTOCOL_VERSION } from '../src/shared/wire.js';

let server: Awaited<ReturnType<typeof natsServer>>;
let caller: NatsConnection;
let markers: string;

beforeAll(async () => {
  server = await natsServer();
  caller = await connect({ servers: server.url });
  markers = await mkdtemp(path.join(os.tmpdir(), 'kb-redelivered-'));
});

afterAll(async () => {
  await caller?.close();
  await server?.stop();
  await rm(markers, { recursive: true, force: true });
});

function withHeaders(values: Record<string, string>): ReturnType<typeof headers> {
  const h = headers();
  for (const [name, value] of Object.entries(values)) h.set(name, value);
  return h;
}

it("a caller's cancel reaches the delivery of its task that it accepted, while the worker still waits for the answer to an earlier delivery's start", async () => {
  const pool = newPool('redelivered');
  const worker = await startExecutionWorker({ connection: { servers: server.url }, pool, plugins: [QUEUE_PLUGIN], backend: { type: 'in-process' }, concurrency: 2 });
  // Not checked by the pool (no value loses a task): a task unanswered for a second goes again.
  const jsm = await jetstreamManager(caller);
  await jsm.consumers.update(`KBEXEC_${pool}`, `${pool}-workers`, { ack_wait: nanos(1000) });
  const subject = `kbexec.${pool}.caller.by-hand`;
  const id = `redelivered-${Math.random().toString(16).slice(2)}`;
  const file = path.join(markers, `${id}.log`);
  let starts = 0;
  let result: { ok: boolean; error?: { code?: string } } | undefined;
  // The first start never reaches this caller (lost on the way); the second is accepted.
  const sub = caller.subscribe(subject, {
    callback: (_error, msg: Msg) => {
      const kind = msg.headers?.get('Kb-Kind');
      if (kind === 'started') {
        if (++starts === 2) msg.respond(v8.serialize({ accept: true, remainingMs: 20_000 }));
      } else if (kind === 'heartbeat') msg.respond(v8.serialize({ unknown: [] }));
      else {
        if (kind === 'result') result = v8.deserialize(msg.data);
        if (msg.reply) msg.respond();
      }
    },
  });
  try {
    const task = { executionId: id, pluginId: QUEUE_PROBE, pluginVersion: '1.0.0', handlerId: 'mark', input: { file }, inputFollows: false, context: {}, timeoutMs: 20_000, workspace: false, keepWorkspace: false };
    const taskHeaders = withHeaders({ 'Kb-Kind': 'task', 'Kb-Exec-Id': id, 'Kb-Reply': subject, 'Kb-Lost-Ms': '5000', 'Kb-Protocol': String(QUEUE_PROTOCOL_VERSION) });
    await caller.request(`kbexec.${pool}.tasks`, v8.serialize(task), { headers: taskHeaders, timeout: 5000 });
    // The accepted delivery's handler runs; then its caller stops it.
    await expect.poll(async () => (await readFile(file, 'utf8').catch(() => '')).includes(`${id} started`), { timeout: 15_000, interval: 50 }).toBe(true);
    const reason = serializeError(new AbortedError('stopped by its caller', { details: { phase: 'running' } }));
    caller.publish(`kbexec.${pool}.worker.${worker.id}`, v8.serialize({ reason }), { headers: withHeaders({ 'Kb-Kind': 'cancel', 'Kb-Exec-Id': id, 'Kb-Reply': subject }) });
    // Stopped within a few seconds (on a loaded machine), not at the worker's own time limit 21 s on.
    await expect.poll(() => result, { timeout: 8000, interval: 50 }).toBeDefined();
    expect(result).toMatchObject({ ok: false, error: { code: 'ABORTED' } });
    expect((await readFile(file, 'utf8')).trim().split('\n')).toEqual([`${id} started`, `${id} signal ABORTED`]);
    expect(starts).toBe(2);
  } finally {
    sub.unsubscribe();
    await worker.close();
  }
}, 40_000);

it('the earlier delivery, its start unanswered, withdraws nothing once its caller accepted a later delivery of its task here (the caller, which knows a start by its worker alone, would take it for that one)', async () => {
  const pool = newPool('redelivered-withdraw');
  const worker = await startExecutionWorker({ connection: { servers: server.url }, pool, plugins: [QUEUE_PLUGIN], backend: { type: 'in-process' }, concurrency: 2 });
  const jsm = await jetstreamManager(caller);
  await jsm.consumers.update(`KBEXEC_${pool}`, `${pool}-workers`, { ack_wait: nanos(1000) });
  const subject = `kbexec.${pool}.caller.by-hand`;
  const id = `redelivered-${Math.random().toString(16).slice(2)}`;
  const file = path.join(markers, `${id}.log`);
  const release = path.join(markers, `${id}.release`);
  let starts = 0;
  const kinds: string[] = [];
  let result: { ok: boolean } | undefined;
  const sub = caller.subscribe(subject, {
    callback: (_error, msg: Msg) => {
      const kind = msg.headers?.get('Kb-Kind') ?? '';
      if (kind !== 'heartbeat') kinds.push(kind);
      if (kind === 'started') {
        if (++starts === 2) msg.respond(v8.serialize({ accept: true, remainingMs: 20_000 }));
      } else if (kind === 'heartbeat') msg.respond(v8.serialize({ unknown: [] }));
      else {
        if (kind === 'result') result = v8.deserialize(msg.data);
        if (msg.reply) msg.respond();
      }
    },
  });
  try {
    const task = { executionId: id, pluginId: QUEUE_PROBE, pluginVersion: '1.0.0', handlerId: 'mark', input: { file, release }, inputFollows: false, context: {}, timeoutMs: 20_000, workspace: false, keepWorkspace: false };
    const taskHeaders = withHeaders({ 'Kb-Kind': 'task', 'Kb-Exec-Id': id, 'Kb-Reply': subject, 'Kb-Lost-Ms': '3000', 'Kb-Protocol': String(QUEUE_PROTOCOL_VERSION) });
    await caller.request(`kbexec.${pool}.tasks`, v8.serialize(task), { headers: taskHeaders, timeout: 5000 });
    await expect.poll(async () => (await readFile(file, 'utf8').catch(() => '')).includes(`${id} started`), { timeout: 15_000, interval: 50 }).toBe(true);
    // The first delivery's ask (3 s, the caller's workerLostMs) runs out while the accepted one runs.
    await expect.poll(() => worker.running, { timeout: 10_000, interval: 50 }).toBe(1);
    await writeFile(release, '');
    await expect.poll(() => result, { timeout: 10_000, interval: 50 }).toBeDefined();
    expect(result).toMatchObject({ ok: true });
    expect(kinds).toEqual(['started', 'started', 'event', 'result']);
  } finally {
    sub.unsubscribe();
    await worker.close();
  }
}, 40_000);

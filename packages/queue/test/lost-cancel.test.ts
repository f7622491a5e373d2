// A caller whose cancel never reaches the worker (lost on the way, a host that answers heartbeats
// but whose stop message went into a gap): the worker's own time limit, the caller's deadline plus
// a margin, stops the handler and reports the TIMEOUT the caller set. The caller here is a plain
// NATS connection that answers as a host does, except that it never sends a cancel.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import { startExecutionWorker } from '@kb-labs/plugin-execution-queue';
import { connect, headers, type Msg, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { QUEUE_PROBE, QUEUE_PLUGIN, natsServer, newPool } from './helpers.js';
import { QUEUE_PROTOCOL_VERSION } from '../src/shared/wire.js';

let server: Awaited<ReturnType<typeof natsServer>>;
let caller: NatsConnection;
let markers: string;

beforeAll(async () => {
  server = await natsServer();
  caller = await connect({ servers: server.url });
  markers = await mkdtemp(path.join(os.tmpdir(), 'kb-lost-cancel-'));
});

afterAll(async () => {
  await caller?.close();
  await server?.stop();
  await rm(markers, { recursive: true, force: true });
});

it('the worker stops a handler whose cancel never came at the caller\'s deadline (plus its margin), and reports the TIMEOUT the caller set', async () => {
  const pool = newPool('lost-cancel');
  const worker = await startExecutionWorker({ connection: { servers: server.url }, pool, plugins: [QUEUE_PLUGIN], backend: { type: 'in-process' }, concurrency: 1 });
  const subject = `kbexec.${pool}.caller.by-hand`;
  const id = `lost-cancel-${Math.random().toString(16).slice(2)}`;
  const file = path.join(markers, `${id}.log`);
  let result: { ok: boolean; error?: { code?: string; details?: Record<string, unknown> } } | undefined;
  // Accepts the start with 300 ms left, says at every heartbeat it still waits, and never cancels.
  const sub = caller.subscribe(subject, {
    callback: (_error, msg: Msg) => {
      const kind = msg.headers?.get('Kb-Kind');
      if (kind === 'started') msg.respond(v8.serialize({ accept: true, remainingMs: 300 }));
      else if (kind === 'heartbeat') msg.respond(v8.serialize({ unknown: [] }));
      else {
        if (kind === 'result') result = v8.deserialize(msg.data);
        if (msg.reply) msg.respond();
      }
    },
  });
  try {
    const h = headers();
    for (const [name, value] of Object.entries({ 'Kb-Kind': 'task', 'Kb-Exec-Id': id, 'Kb-Reply': subject, 'Kb-Lost-Ms': '3000', 'Kb-Protocol': String(QUEUE_PROTOCOL_VERSION) })) h.set(name, value);
    const task = { executionId: id, pluginId: QUEUE_PROBE, pluginVersion: '1.0.0', handlerId: 'mark', input: { file }, inputFollows: false, context: {}, timeoutMs: 300, workspace: false, keepWorkspace: false };
    await caller.request(`kbexec.${pool}.tasks`, v8.serialize(task), { headers: h, timeout: 5000 });
    // 300 ms and the worker's 1 s margin; a generous bound for a loaded machine, far below "for ever".
    await expect.poll(() => result, { timeout: 15_000, interval: 50 }).toBeDefined();
    expect(result).toMatchObject({ ok: false, error: { code: 'TIMEOUT', details: { timeoutMs: 300 } } });
    const lines = (await readFile(file, 'utf8')).trim().split('\n');
    expect(lines[0]).toBe(`${id} started`);
    expect(lines[1]).toMatch(new RegExp(`^${id} signal (TIMEOUT|ABORTED)$`));
  } finally {
    sub.unsubscribe();
    await worker.close();
  }
}, 30_000);

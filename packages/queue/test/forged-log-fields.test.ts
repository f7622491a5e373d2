// A log line's fields a peer on the pool's account (or a worker of another version) sends a host
// past what a worker's runtime lets through: the host cuts them as ctx.logger cuts them, as it
// does on the other out-of-process backends (docs/reliability.md: fields are cut on every backend).
import v8 from 'node:v8';
import type { LogEntry } from '@kb-labs/plugin-execution-core';
import { BASIC, fixturePlugins } from '@kb-labs/plugin-execution-conformance';
import { QueueBackend } from '@kb-labs/plugin-execution-queue';
import { afterEach, expect, it } from 'vitest';
import { asWorker, firstTask, newPool, startedAs, testServer } from './helpers.js';

const nats = testServer();
const closing: Array<() => Promise<unknown>> = [];

afterEach(async () => {
  await Promise.all(closing.splice(0).map((close) => close()));
});

it("a forged log line's fields are cut by the host as ctx.logger cuts them: 100,000 characters reached onLog whole, and one object listed 100 times at each of 8 levels was a line no JSON.stringify finishes", async () => {
  const pool = newPool('log-fields');
  const stream = `KBEXEC_${pool}`;
  const backend = new QueueBackend({ connection: { servers: nats.url }, pool, plugins: [fixturePlugins.basic] });
  closing.push(() => backend.shutdown({ timeoutMs: 2000 }));
  const executionId = `log-fields-${Math.random().toString(16).slice(2)}`;
  const logs: LogEntry[] = [];
  const running = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1, executionId }, { timeoutMs: 20_000, onLog: (entry) => void logs.push(entry) });
  const { caller: to, taskId } = await firstTask(nats.jsm, stream);
  const worker = { id: 'peer-worker', host: 'peer-host', pid: 4242 };
  expect(await startedAs(nats.nc, to, worker, taskId, executionId)).toMatchObject({ accept: true });
  let listed: unknown = { s: 'z' };
  for (let level = 0; level < 8; level++) listed = { [`k${level}`]: Array(100).fill(listed) };
  nats.nc.publish(to, v8.serialize({ level: 'info', message: 'fields', fields: { big: 'y'.repeat(100_000), listed }, stream: 'logger' }), { headers: asWorker('log', executionId) });
  // What a worker's runtime sends (already cut, small) comes as it is.
  nats.nc.publish(to, v8.serialize({ level: 'info', message: 'small', fields: { a: [1, { b: 'c' }] }, stream: 'logger' }), { headers: asWorker('log', executionId) });
  nats.nc.publish(to, v8.serialize({ ok: true, data: 'done', meta: { artifacts: [] } }), { headers: asWorker('result', executionId) });
  expect(await running).toMatchObject({ ok: true, data: 'done' });
  const line = logs.find((entry) => entry.message === 'fields');
  const big = String(line?.fields?.big);
  // Before: all 100,000 characters, and the object listed 100^8 times over.
  expect({ length: big.length, end: big.slice(-20) }).toEqual({ length: 64 * 1024 - 1, end: '… [34485 more chars]' });
  expect(JSON.stringify(line?.fields).length).toBeLessThan(5 * 1024 * 1024);
  expect(logs.find((entry) => entry.message === 'small')?.fields).toEqual({ a: [1, { b: 'c' }] });
}, 30_000);

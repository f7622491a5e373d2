// A task a peer on the pool's account forged whose caller (its Kb-Reply header) is one token after
// `<prefix>.<pool>.caller.`, as a host's is, but longer than any host's id (64 characters): the
// worker asked it `started` on that subject, whose PUB line the server refused ("Maximum Control
// Line Exceeded", 4 KiB by default) by closing the worker's connection; the task, never
// acknowledged, came back and cut it again, every time, with the honest executions on it.
import v8 from 'node:v8';
import { BASIC, expectOk, fixturePlugins } from '@kb-labs/plugin-execution-conformance';
import { QueueBackend, startExecutionWorker } from '@kb-labs/plugin-execution-queue';
import { headers } from '@nats-io/transport-node';
import { afterEach, expect, it } from 'vitest';
import { newPool, testServer } from './helpers.js';

const nats = testServer();
const closing: Array<() => Promise<unknown>> = [];
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

afterEach(async () => {
  await Promise.all(closing.splice(0).map((close) => close()));
});

it("a task whose caller is no host id (a token over 64 characters) is removed unasked: the worker's connection is not cut by asking it", async () => {
  const pool = newPool('long-caller');
  const worker = await startExecutionWorker({ connection: { servers: nats.url }, pool, plugins: [fixturePlugins.basic], backend: { type: 'in-process' }, concurrency: 2 });
  closing.push(() => worker.close());
  const warnings: string[] = [];
  const onWarning = (warning: Error & { code?: string }) => void (warning.code === 'KB_PLUGIN_WORKER_CONNECTION' && warnings.push(warning.message));
  process.on('warning', onWarning);
  let asked = 0;
  const onCallers = nats.nc.subscribe(`kbexec.${pool}.caller.>`, { callback: () => void asked++ });
  try {
    const id = 'long-caller-task';
    const h = headers();
    const caller = `kbexec.${pool}.caller.${'x'.repeat(5000)}`;
    for (const [name, value] of Object.entries({ 'Kb-Kind': 'task', 'Kb-Exec-Id': id, 'Kb-Reply': caller, 'Kb-Lost-Ms': '3000', 'Kb-Protocol': '2' })) h.set(name, value);
    const body = { executionId: id, pluginId: BASIC, pluginVersion: '1.0.0', handlerId: 'echo', input: 1, inputFollows: false, context: {}, timeoutMs: 5000, workspace: false, keepWorkspace: false };
    await nats.nc.request(`kbexec.${pool}.tasks`, v8.serialize(body), { headers: h, timeout: 5000 });
    await sleep(3000);
  } finally {
    process.off('warning', onWarning);
    onCallers.unsubscribe();
  }
  const left = (await nats.jsm.streams.info(`KBEXEC_${pool}`)).state.messages;
  // Before: the connection was cut within a few ms of the task's delivery, and again at each redelivery (every 5 s); the task stayed.
  expect({ left, asked, cuts: warnings.filter((w) => w.includes('lost its connection')).length }).toEqual({ left: 0, asked: 0, cuts: 0 });
  const backend = new QueueBackend({ connection: { servers: nats.url }, pool, plugins: [fixturePlugins.basic] });
  closing.push(() => backend.shutdown({ timeoutMs: 2000 }));
  const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'still served' }, { timeoutMs: 20_000 });
  expectOk(result);
  expect(result.data).toBe('still served');
}, 30_000);

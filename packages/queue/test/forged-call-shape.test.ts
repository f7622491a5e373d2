// A platform or channel call a peer on the pool's account (or a worker of another version) sends a
// host in a shape no worker's runtime sends (an id that is not an integer, an unknown target, no
// list of arguments) fails its execution as a protocol fault (WORKER_CRASHED), as a child's or a
// thread's does on the other backends (core's runnerMessageProblem), instead of being answered.
import v8 from 'node:v8';
import { BASIC, fixturePlugins } from '@kb-labs/plugin-execution-conformance';
import { QueueBackend } from '@kb-labs/plugin-execution-queue';
import { afterEach, expect, it } from 'vitest';
import { asWorker, newPool, testServer } from './helpers.js';

const nats = testServer();
const closing: Array<() => Promise<unknown>> = [];

afterEach(async () => {
  await Promise.all(closing.splice(0).map((close) => close()));
});

it('a call of another shape than workers send fails the execution as a protocol fault (WORKER_CRASHED), not answered as one the handler made', async () => {
  const pool = newPool('forged-call');
  const stream = `KBEXEC_${pool}`;
  const backend = new QueueBackend({ connection: { servers: nats.url }, pool, plugins: [fixturePlugins.basic] });
  closing.push(() => backend.shutdown({ timeoutMs: 2000 }));
  const calls: Array<[string, Record<string, unknown>]> = [
    ['an id that is not an integer', { type: 'rpc', id: 'x', target: 'platform', service: 'kv', method: 'get', args: ['k'] }],
    ['an unknown target', { type: 'rpc', id: 1, target: 'disk', service: 'kv', method: 'get', args: ['k'] }],
    ['no list of arguments', { type: 'rpc', id: 2, target: 'platform', service: 'kv', method: 'get', args: 'k' }],
  ];
  for (const [n, [what, call]] of calls.entries()) {
    const executionId = `forged-call-${n}-${Math.random().toString(16).slice(2)}`;
    const running = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1, executionId }, { timeoutMs: 20_000 });
    await expect.poll(async () => (await nats.jsm.streams.info(stream).catch(() => undefined))?.state.messages, { timeout: 10_000 }).toBe(1);
    const task = (await nats.jsm.streams.getMessage(stream, { seq: (await nats.jsm.streams.info(stream)).state.first_seq }))!;
    const to = task.header.get('Kb-Reply');
    const worker = { id: 'peer-worker', host: 'peer-host', pid: 4242 };
    const answer = await nats.nc.request(to, v8.serialize({ worker, task: task.header.get('Nats-Msg-Id') }), { headers: asWorker('started', executionId), timeout: 5000 });
    expect(v8.deserialize(answer.data), what).toMatchObject({ accept: true });
    // The peer acknowledges the task as a worker does once its start is accepted: the stream is empty for the next case.
    await nats.jsm.streams.deleteMessage(stream, task.seq);
    nats.nc.publish(to, v8.serialize(call), { headers: asWorker('rpc', executionId) });
    nats.nc.publish(to, v8.serialize({ ok: true, data: 'forged', meta: { artifacts: [] } }), { headers: asWorker('result', executionId) });
    const result = await running;
    expect(result.ok ? undefined : result.error, what).toMatchObject({ code: 'WORKER_CRASHED', details: { reason: 'protocol' } });
  }
}, 30_000);

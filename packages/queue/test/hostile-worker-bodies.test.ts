// What a peer on the pool's account (or a worker of another version) can send a host about its
// executions in bodies of another shape than workers send: the execution fails saying what was
// wrong, or the message is dropped; the host itself goes on.
import v8 from 'node:v8';
import { BASIC, fixturePlugins } from '@kb-labs/plugin-execution-conformance';
import { QueueBackend, startExecutionWorker, type QueueRunnerStats } from '@kb-labs/plugin-execution-queue';
import { headers } from '@nats-io/transport-node';
import { afterEach, describe, expect, it } from 'vitest';
import { readPresence } from '../src/shared/presence.js';
import { asWorker, newPool, testServer } from './helpers.js';

/** `nats.nc` is the peer's connection: it has the pool's credentials, as a host or worker would. */
const nats = testServer();
const closing: Array<() => Promise<unknown>> = [];

afterEach(async () => {
  await Promise.all(closing.splice(0).map((close) => close()));
});

/** A host of a pool no worker serves, and its caller subject and tasks' ids as anyone who sees its tasks learns them. */
async function lonelyHost(name: string): Promise<{ backend: QueueBackend; caller: () => Promise<string>; taskIds: Map<string, string> }> {
  const pool = newPool(name);
  const taskIds = new Map<string, string>();
  let caller = '';
  const onTasks = nats.nc.subscribe(`kbexec.${pool}.tasks`, {
    callback: (_error, msg) => {
      caller ||= msg.headers?.get('Kb-Reply') ?? '';
      taskIds.set(msg.headers?.get('Kb-Exec-Id') ?? '', msg.headers?.get('Nats-Msg-Id') ?? '');
    },
  });
  const backend = new QueueBackend({ connection: { servers: nats.url }, pool, plugins: [fixturePlugins.basic], workerLostMs: 1000 });
  closing.push(async () => {
    onTasks.unsubscribe();
    await backend.shutdown({ timeoutMs: 2000 });
  });
  const known = async () => {
    await expect.poll(() => caller, { timeout: 10_000 }).not.toBe('');
    return caller;
  };
  return { backend, caller: known, taskIds };
}

/** A worker's `started` for `executionId` (its stream message's id `task`), sent to the caller subject `to` as a worker sends it: the host's answer, raw. */
function sendStarted(to: string, executionId: string, task: string | undefined, worker: unknown = { id: 'w1', host: 'h1', pid: 1 }) {
  return nats.nc.request(to, v8.serialize({ worker, task }), { headers: asWorker('started', executionId), timeout: 5000 });
}

describe('a `started` whose worker is not of the shape workers send', () => {
  it('is refused, and the execution fails at once naming the field (WORKER_CRASHED, protocol): a host without a toString threw in the heartbeat watch at every tick, for good', async () => {
    const { backend, caller } = await lonelyHost('forged-start');
    const uncaught: unknown[] = [];
    const onUncaught = (error: unknown) => uncaught.push(error);
    process.on('uncaughtException', onUncaught);
    const cases: Array<[unknown, string]> = [
      [{ worker: { id: 'w1', host: { toString: null }, pid: 1 } }, 'worker.host'],
      [{ worker: { id: 42, host: 'h', pid: 1 } }, 'worker.id'],
      [{ worker: { id: 'a.b.>', host: 'h', pid: 1 } }, 'worker.id'],
      [{ worker: { id: 'w1', host: 'h', pid: 'p' } }, 'worker.pid'],
      [{ worker: { id: 'w1', host: 'h', pid: Number.NaN } }, 'worker.pid'],
      [{ worker: null }, 'worker'],
      [['w1'], 'an array'],
    ];
    try {
      for (const [n, [body, named]] of cases.entries()) {
        const executionId = `forged-start-${n}`;
        const running = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1, executionId }, { timeoutMs: 8000 });
        const answer = await nats.nc.request(await caller(), v8.serialize(body), { headers: asWorker('started', executionId), timeout: 5000 });
        expect(v8.deserialize(answer.data), named).toMatchObject({ accept: false, reason: expect.stringContaining(named) });
        const result = await running;
        expect(result.ok ? undefined : result.error, named).toMatchObject({ code: 'WORKER_CRASHED', message: expect.stringContaining(named), details: { reason: 'protocol' } });
        expect(result.meta.runnerId, named).toBeUndefined();
      }
      // The heartbeat watch ticks on without throwing.
      await new Promise((resolve) => setTimeout(resolve, 1500));
    } finally {
      process.off('uncaughtException', onUncaught);
    }
    expect(uncaught).toEqual([]);
    expect((await backend.stats()).active).toBe(0);
  }, 60_000);
});

describe("an event or a platform call of another type than its kind's", () => {
  it('fails the execution as a protocol fault (WORKER_CRASHED): a { type: "result" } closed its session, a { type: "log" } logged a line of level "nonsense"', async () => {
    const pool = newPool('forged-relay');
    const worker = await startExecutionWorker({ connection: { servers: nats.url }, pool, plugins: [fixturePlugins.basic], backend: { type: 'in-process' }, concurrency: 2 });
    closing.push(() => worker.close());
    let caller = '';
    const onTasks = nats.nc.subscribe(`kbexec.${pool}.tasks`, { callback: (_error, msg) => void (caller ||= msg.headers?.get('Kb-Reply') ?? '') });
    closing.push(async () => onTasks.unsubscribe());
    const backend = new QueueBackend({ connection: { servers: nats.url }, pool, plugins: [fixturePlugins.basic] });
    closing.push(() => backend.shutdown({ timeoutMs: 2000 }));
    const cases: Array<[string, unknown]> = [
      ['rpc', { type: 'log', level: 'nonsense', message: 'forged' }],
      ['event', { type: 'result', ok: true, data: 'forged' }],
      ['rpc', { type: 'may-begin' }],
      ['event', null],
    ];
    for (const [n, [kind, body]] of cases.entries()) {
      const logs: unknown[] = [];
      const executionId = `forged-relay-${n}`;
      const running = backend.execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 3000 }, executionId }, { timeoutMs: 20_000, onLog: (entry) => logs.push(entry) });
      await expect.poll(() => caller, { timeout: 10_000 }).not.toBe('');
      await new Promise((resolve) => setTimeout(resolve, 500));
      nats.nc.publish(caller, v8.serialize(body), { headers: asWorker(kind, executionId) });
      const result = await running;
      const what = `${kind} ${JSON.stringify(body)}`;
      expect(result.ok ? undefined : result.error, what).toMatchObject({ code: 'WORKER_CRASHED', details: { reason: 'protocol' } });
      expect(logs, what).toEqual([]);
    }
  }, 60_000);
});

describe("a result whose meta is not of the shape workers send", () => {
  it('fails the execution as a protocol fault naming the field, where its artifacts, pid and workspace went to the caller as they came', async () => {
    const { backend, caller, taskIds } = await lonelyHost('forged-meta');
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ artifacts: ['a.txt', 1, { a: 1 }] }, 'meta.artifacts[1]'],
      [{ artifacts: 'a.txt' }, 'meta.artifacts'],
      [{ artifacts: [], workspaceDir: { toString: null } }, 'meta.workspaceDir'],
      [{ artifacts: [], pid: '12' }, 'meta.pid'],
      [{ artifacts: [], threadId: -1 }, 'meta.threadId'],
      [{ artifacts: [], pid: Number.POSITIVE_INFINITY }, 'meta.pid'],
    ];
    for (const [n, [meta, named]] of cases.entries()) {
      const executionId = `forged-meta-${n}`;
      const running = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1, executionId }, { timeoutMs: 8000 });
      const to = await caller();
      await expect.poll(() => taskIds.get(executionId), { timeout: 5000 }).toBeDefined();
      const answer = await sendStarted(to, executionId, taskIds.get(executionId));
      expect(v8.deserialize(answer.data)).toMatchObject({ accept: true });
      nats.nc.publish(to, v8.serialize({ ok: true, data: 'forged', meta }), { headers: asWorker('result', executionId) });
      const result = await running;
      expect(result.ok ? undefined : result.error, named).toMatchObject({ code: 'WORKER_CRASHED', message: expect.stringContaining(named), details: { reason: 'protocol' } });
      expect(result.meta, named).toMatchObject({ artifacts: [], runnerId: 'w1', pid: 1 });
      expect(result.meta.workspaceDir, named).toBeUndefined();
    }
  }, 60_000);
});

describe('text a worker sends, quoted in messages and health()', () => {
  // ESC sets a terminal's title, CSI (a C1 control) starts an escape sequence as ESC does, U+202E turns the rest of the line round.
  const evil = 'evil\x1b]0;x\x07\u009b31m\u202e';
  const shown = 'evil\\x1b]0;x\\x07\\x9b31m\\u202e';
  const raw = /[\x00-\x1f\x7f-\x9f\u202e]/;

  it("a worker's host name: a WORKER_CRASHED message writes its control characters out, its meta keeps it as it came", async () => {
    const { backend, caller, taskIds } = await lonelyHost('shown-host');
    const executionId = 'shown-host';
    const running = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1, executionId }, { timeoutMs: 8000 });
    const to = await caller();
    await expect.poll(() => taskIds.get(executionId), { timeout: 5000 }).toBeDefined();
    await sendStarted(to, executionId, taskIds.get(executionId), { id: 'w1', host: evil, pid: 1 });
    // No heartbeat follows: lost after workerLostMs.
    const result = await running;
    const error = result.ok ? undefined : result.error;
    expect(error).toMatchObject({ code: 'WORKER_CRASHED', details: { reason: 'runner-lost' } });
    expect(error?.message).toContain(`Worker w1 (${shown}) running handler`);
    expect(error?.message).not.toMatch(raw);
    expect(result.meta.runnerHost).toBe(evil);
  }, 30_000);

  it("a presence's backend and isolation reason: health() writes their control characters out (its id, a worker's id, has none: readPresence)", async () => {
    const pool = newPool('shown-presence');
    const backend = new QueueBackend({ connection: { servers: nats.url }, pool, plugins: [fixturePlugins.basic] });
    closing.push(() => backend.shutdown({ timeoutMs: 2000 }));
    await backend.health();
    const presence = (id: string, active: string) => ({ id, host: 'h', pid: 1, concurrency: 1, running: 0, heartbeatMs: 1000, backend: `in-process${evil}`, isolation: { active, layers: [], reason: `reason${evil}` } });
    nats.nc.publish(`kbexec.${pool}.presence`, v8.serialize(presence('one', 'none')));
    await nats.nc.flush();
    await expect.poll(async () => (await backend.stats()).runners, { timeout: 5000 }).toMatchObject({ workersSeen: 1 });
    const alone = (await backend.health()).isolation?.reason ?? '';
    expect(alone).toContain(`each on its local in-process${shown} backend: reason${shown}`);
    expect(alone).not.toMatch(raw);
    // Two workers that differ: each named by its id and backend.
    nats.nc.publish(`kbexec.${pool}.presence`, v8.serialize(presence('two', 'process')));
    await nats.nc.flush();
    await expect.poll(async () => (await backend.stats()).runners, { timeout: 5000 }).toMatchObject({ workersSeen: 2 });
    const differ = (await backend.health()).isolation?.reason ?? '';
    expect(differ).toContain(`none: one (in-process${shown})`);
    expect(differ).not.toMatch(raw);
  }, 30_000);
});

describe('a presence of figures or text beyond what workers send', () => {
  const presence = (id: string, more: Record<string, unknown> = {}) => ({ id, host: 'h', pid: 1, concurrency: 4, running: 0, heartbeatMs: 60_000, backend: 'in-process', ...more });

  it("is dropped, or its isolation reason cut: a worker of 1e9 slots was listed in stats(), a 100,000-character reason quoted whole in health()", async () => {
    const pool = newPool('presence-bounds');
    const backend = new QueueBackend({ connection: { servers: nats.url }, pool, plugins: [fixturePlugins.basic] });
    closing.push(() => backend.shutdown({ timeoutMs: 2000 }));
    await backend.health();
    const beyond = [
      presence('slots', { concurrency: 1e9 }),
      presence('busy', { running: 20_000 }),
      presence('a.b.>'),
      presence('x'.repeat(65)),
      presence('active', { isolation: { active: 'x'.repeat(1000), layers: [], reason: 'r' } }),
    ];
    for (const body of beyond) nats.nc.publish(`kbexec.${pool}.presence`, v8.serialize(body));
    // Published last, heard last: once it is listed, the others were read.
    const reason = 'r'.repeat(100_000);
    nats.nc.publish(`kbexec.${pool}.presence`, v8.serialize(presence('long', { isolation: { active: 'thread', layers: ['worker thread'], reason } })));
    await nats.nc.flush();
    const runners = async () => (await backend.stats()).runners as QueueRunnerStats;
    await expect.poll(async () => (await runners()).workersSeen, { timeout: 5000 }).toBeGreaterThan(0);
    expect((await runners()).workers.map((worker) => worker.id)).toEqual(['long']);
    const shown = (await backend.health()).isolation?.reason ?? '';
    expect(shown).toContain(`${'r'.repeat(4096)}… [${100_000 - 4096} more characters]`);
    expect(shown.length).toBeLessThan(5000);
  }, 30_000);

  it('is kept of the fields workers send only: the host held unknown keys for its lost-worker window', () => {
    const sent = presence('w1', { isolation: { active: 'thread', layers: ['worker thread'], reason: 'r', extra: 'x'.repeat(1000) }, draining: true, plugins: ['p@1.0.0'] });
    const kept = readPresence(v8.serialize({ ...sent, extra: 'x'.repeat(100_000), more: { deep: [1, 2, 3] } }));
    expect(kept).toStrictEqual({ ...sent, isolation: { active: 'thread', layers: ['worker thread'], reason: 'r' } });
  });
});

describe("a result's Kb-Output-Sent header of more log lines and events than its worker could have sent", () => {
  it('is taken as absent: a forged 1e15 made the host warn "1000000000000000 of the 1000000000000000 … lost"; a count that could be is still said', async () => {
    const { backend, caller, taskIds } = await lonelyHost('output-sent');
    const cases: Array<[string, string | undefined]> = [
      ['1000000000000000', undefined],
      ['9007199254740991', undefined],
      ['3', '3 of the 3 log line(s) and event(s) of this execution did not reach this host'],
    ];
    for (const [n, [sent, said]] of cases.entries()) {
      const executionId = `output-sent-${n}`;
      const warnings: string[] = [];
      const running = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1, executionId }, { timeoutMs: 8000, onLog: (entry) => void (entry.level === 'warn' && warnings.push(entry.message)) });
      const to = await caller();
      await expect.poll(() => taskIds.get(executionId), { timeout: 5000 }).toBeDefined();
      const answer = await sendStarted(to, executionId, taskIds.get(executionId));
      expect(v8.deserialize(answer.data)).toMatchObject({ accept: true });
      const h = asWorker('result', executionId);
      h.set('Kb-Output-Sent', sent);
      nats.nc.publish(to, v8.serialize({ ok: true, data: 'forged', meta: { artifacts: [] } }), { headers: h });
      expect(await running, sent).toMatchObject({ ok: true, data: 'forged' });
      expect(warnings, sent).toEqual(said === undefined ? [] : [expect.stringContaining(said)]);
    }
  }, 60_000);
});

describe('a log line of a longer logger message than the runtime lets through', () => {
  it('is cut by the host, as on local backends: a forged (or older) worker\'s 100,000 characters reached onLog whole; one the runtime cut, and a stdout line, come as they are', async () => {
    const { backend, caller, taskIds } = await lonelyHost('log-cut');
    const executionId = 'log-cut';
    const logs: Array<{ message: string; stream: string }> = [];
    const running = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1, executionId }, { timeoutMs: 8000, onLog: (entry) => void logs.push(entry) });
    const to = await caller();
    await expect.poll(() => taskIds.get(executionId), { timeout: 5000 }).toBeDefined();
    await sendStarted(to, executionId, taskIds.get(executionId));
    const cutByRuntime = `${'c'.repeat(64 * 1024)}… [${100_000 - 64 * 1024} more characters]`;
    const lines = [
      { level: 'info', message: 'x'.repeat(100_000), stream: 'logger' },
      { level: 'info', message: cutByRuntime, stream: 'logger' },
      { level: 'info', message: 'o'.repeat(100_000), stream: 'stdout' },
    ];
    for (const line of lines) nats.nc.publish(to, v8.serialize(line), { headers: asWorker('log', executionId) });
    nats.nc.publish(to, v8.serialize({ ok: true, data: 'forged', meta: { artifacts: [] } }), { headers: asWorker('result', executionId) });
    expect(await running).toMatchObject({ ok: true });
    expect(logs.map(({ message, stream }) => ({ message, stream }))).toEqual([
      { message: `${'x'.repeat(64 * 1024)}… [truncated by the host]`, stream: 'logger' },
      { message: cutByRuntime, stream: 'logger' },
      { message: 'o'.repeat(100_000), stream: 'stdout' },
    ]);
  }, 30_000);
});

describe('a `started` for an execution another worker has started', () => {
  it('is refused (the task is put back, not run): a redelivery or a peer never runs the handler a second time', async () => {
    const { backend, caller, taskIds } = await lonelyHost('started-twice');
    const executionId = 'started-twice';
    const running = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1, executionId }, { timeoutMs: 8000 });
    const to = await caller();
    await expect.poll(() => taskIds.get(executionId), { timeout: 5000 }).toBeDefined();
    const start = async (worker: string, task = taskIds.get(executionId)) => {
      const answer = await sendStarted(to, executionId, task, { id: worker, host: 'h1', pid: 1 });
      return v8.deserialize(answer.data) as unknown;
    };
    // The task of an earlier execution under the same id would run that one's input for this one.
    expect(await start('w0', 'an-earlier-task')).toMatchObject({ accept: false, reason: expect.stringContaining('earlier execution') });
    expect(await start('w1')).toMatchObject({ accept: true });
    expect(await start('w2')).toMatchObject({ accept: false, retry: true, reason: expect.stringContaining('already started by worker w1') });
    expect(await start('w1')).toMatchObject({ accept: false });
    nats.nc.publish(to, v8.serialize({ ok: true, data: 'once', meta: { artifacts: [] } }), { headers: asWorker('result', executionId) });
    const result = await running;
    expect(result).toMatchObject({ ok: true, data: 'once', meta: { runnerId: 'w1' } });
  }, 60_000);
});

describe('a `started` of the shape workers send, for an execution this host does not wait for', () => {
  it('is refused, not retried, so that the worker drops the task (an empty answer would have it take the caller for silent, hand the task back and pass the host over)', async () => {
    const { backend, caller, taskIds } = await lonelyHost('started-unknown');
    const executionId = 'started-over';
    const running = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1, executionId }, { timeoutMs: 8000 });
    const to = await caller();
    await expect.poll(() => taskIds.get(executionId), { timeout: 5000 }).toBeDefined();
    const start = async (id: string) => {
      const answer = await sendStarted(to, id, taskIds.get(id));
      // Empty, the worker cannot read it as an answer and takes the caller for one that did not answer.
      expect(answer.data.length, id).toBeGreaterThan(0);
      return v8.deserialize(answer.data) as unknown;
    };
    expect(await start(executionId)).toMatchObject({ accept: true });
    nats.nc.publish(to, v8.serialize({ ok: true, data: 'over', meta: { artifacts: [] } }), { headers: asWorker('result', executionId) });
    expect(await running).toMatchObject({ ok: true, data: 'over' });
    // One it no longer knows (a redelivered task of an execution that is over), one it never had.
    for (const id of [executionId, 'started-never-asked']) {
      expect(await start(id), id).toEqual({ accept: false, reason: 'no caller waits for this execution' });
    }
  }, 30_000);
});

describe('a `started` of another shape for an execution another worker has started', () => {
  it('is refused, and that worker\'s execution goes on to its result: a start a peer forges does not fail it', async () => {
    const { backend, caller, taskIds } = await lonelyHost('malformed-after-accept');
    const executionId = 'malformed-after-accept';
    const running = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1, executionId }, { timeoutMs: 8000 });
    const to = await caller();
    await expect.poll(() => taskIds.get(executionId), { timeout: 5000 }).toBeDefined();
    const start = async (worker: unknown) => {
      const answer = await sendStarted(to, executionId, taskIds.get(executionId), worker);
      return v8.deserialize(answer.data) as unknown;
    };
    expect(await start({ id: 'w1', host: 'h1', pid: 1 })).toMatchObject({ accept: true });
    expect(await start({ id: 42, host: 'h2', pid: 2 })).toMatchObject({ accept: false, reason: expect.stringContaining('worker.id') });
    nats.nc.publish(to, v8.serialize({ ok: true, data: 'kept', meta: { artifacts: [] } }), { headers: asWorker('result', executionId) });
    expect(await running).toMatchObject({ ok: true, data: 'kept', meta: { runnerId: 'w1' } });
  }, 30_000);
});

describe('a heartbeat naming an execution another worker runs', () => {
  it("keeps nothing alive: the host answers that it does not know the execution, and once its own worker is silent past workerLostMs it fails WORKER_CRASHED, not at its time limit", async () => {
    const { backend, caller, taskIds } = await lonelyHost('heartbeat-other');
    const executionId = 'heartbeat-other';
    const running = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1, executionId }, { timeoutMs: 20_000 });
    const to = await caller();
    await expect.poll(() => taskIds.get(executionId), { timeout: 5000 }).toBeDefined();
    const started = await sendStarted(to, executionId, taskIds.get(executionId));
    expect(v8.deserialize(started.data)).toMatchObject({ accept: true });
    const beat = async (worker: string) => {
      const h = headers();
      h.set('Kb-Kind', 'heartbeat');
      const answer = await nats.nc.request(to, v8.serialize({ worker, executions: [executionId] }), { headers: h, timeout: 5000 });
      return v8.deserialize(answer.data) as { unknown: string[] };
    };
    expect(await beat('w2')).toEqual({ unknown: [executionId] });
    expect(await beat('w1')).toEqual({ unknown: [] });
    // w1 falls silent; another worker's heartbeats for it go on (before: each one kept it alive until its time limit).
    let settled = false;
    void running.finally(() => (settled = true));
    while (!settled) {
      await beat('w2');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const result = await running;
    expect(result).toMatchObject({ ok: false, error: { code: 'WORKER_CRASHED', details: { reason: 'runner-lost' } } });
  }, 60_000);
});

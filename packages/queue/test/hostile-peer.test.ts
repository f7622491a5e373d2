// What a peer with the pool's credentials (a host's or a worker's user, or a plugin on a
// worker-pool worker that read them) can send that no host or worker would: workers and hosts
// drop it, and go on serving everyone else.
import v8 from 'node:v8';
import vm from 'node:vm';
import { BASIC, expectOk, fixturePlugins, waitFor } from '@kb-labs/plugin-execution-conformance';
import { QueueBackend, startExecutionWorker, type ExecutionWorker } from '@kb-labs/plugin-execution-queue';
import { headers } from '@nats-io/transport-node';
import { afterEach, describe, expect, it } from 'vitest';
import { newPool, testServer } from './helpers.js';
import { QUEUE_PROTOCOL_VERSION } from '../src/shared/wire.js';

/** `nats.nc` is the peer's connection: it has the pool's credentials, as a host or worker would. */
const nats = testServer();
const closing: Array<() => Promise<unknown>> = [];
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const HELD_BOUND = 40 * 1024 * 1024;

/**
 * ArrayBuffer bytes held past `before`, collected first. On Node 24 V8 frees buffers' memory after
 * a collection, concurrently, so `arrayBuffers` read at once may still count what is garbage (13 MB
 * here, over 40 MB on a loaded machine): read again after short pauses, up to 2 s, until under
 * HELD_BOUND. What a host or worker really holds stays until its sweep (10 s and a minute).
 */
async function heldSince(before: number, gc: () => void): Promise<number> {
  let held = Infinity;
  for (let i = 0; i < 20 && held >= HELD_BOUND; i++) {
    if (i > 0) await sleep(100);
    gc();
    held = process.memoryUsage().arrayBuffers - before;
  }
  return held;
}

async function worker(pool: string): Promise<ExecutionWorker> {
  const started = await startExecutionWorker({ connection: { servers: nats.url }, pool, plugins: [fixturePlugins.basic], backend: { type: 'in-process' }, concurrency: 2 });
  closing.push(() => started.close());
  return started;
}

function host(pool: string): QueueBackend {
  const backend = new QueueBackend({ connection: { servers: nats.url }, pool, plugins: [fixturePlugins.basic], workerLostMs: 3000 });
  closing.push(() => backend.shutdown({ timeoutMs: 2000 }));
  return backend;
}

/** A task as a host publishes it, whose answers go to `caller`. */
async function forgeTask(pool: string, caller: string, extra: Record<string, string> = {}, forgedBody?: (id: string) => unknown): Promise<string> {
  const id = extra['Kb-Exec-Id'] ?? `forged-${Math.random().toString(16).slice(2)}`;
  const h = headers();
  for (const [name, value] of Object.entries({ 'Kb-Kind': 'task', 'Kb-Exec-Id': id, 'Kb-Reply': caller, 'Kb-Lost-Ms': '3000', 'Kb-Protocol': '2', ...extra })) h.set(name, value);
  const body = forgedBody ? forgedBody(id) : { executionId: id, pluginId: BASIC, pluginVersion: '1.0.0', handlerId: 'echo', input: 1, inputFollows: false, context: {}, timeoutMs: 5000, workspace: false, keepWorkspace: false };
  await nats.nc.request(`kbexec.${pool}.tasks`, v8.serialize(body), { headers: h, timeout: 5000 });
  return id;
}

afterEach(async () => {
  await Promise.all(closing.splice(0).map((close) => close()));
});

describe('a peer answering a worker as a caller would not', () => {
  it('an answer to `started` of another shape (null, no remainingMs) is dropped as one that never came: the worker goes on serving', async () => {
    const pool = newPool('forged-started');
    await worker(pool);
    const answers = [v8.serialize(null), v8.serialize({ accept: true }), v8.serialize({ accept: 'yes', remainingMs: 1000 })];
    let asked = 0;
    const caller = `kbexec.${pool}.caller.evil`;
    const sub = nats.nc.subscribe(caller, {
      callback: (_error, msg) => {
        if (msg.headers?.get('Kb-Kind') === 'started') msg.respond(answers[asked++ % answers.length]!);
      },
    });
    try {
      await forgeTask(pool, caller);
      // Each answer dropped: the task goes back to the stream and is asked about again.
      await expect.poll(() => asked, { timeout: 20_000 }).toBeGreaterThanOrEqual(3);
    } finally {
      sub.unsubscribe();
    }
    // Before, the first answer (null) threw in the worker: its process ended.
    const result = await host(pool).execute({ pluginId: BASIC, handlerId: 'echo', input: 'still here' }, { timeoutMs: 20_000 });
    expectOk(result);
    expect(result.data).toBe('still here');
  }, 40_000);
});

describe('a task a peer forged with headers no host sends', () => {
  it('one whose answers would go to another subject than a host of the pool (the tasks subject itself), with a patience or an execution id no host has, is removed unasked: not asked about and handed back for ever', async () => {
    const pool = newPool('forged-reply');
    await worker(pool);
    const kinds: string[] = [];
    const onTasks = nats.nc.subscribe(`kbexec.${pool}.tasks`, { callback: (_error, msg) => void kinds.push(msg.headers?.get('Kb-Kind') ?? '?') });
    const caller = `kbexec.${pool}.caller.evil`;
    let askedCaller = 0;
    // Every subject under the pool's callers: one of more than one token after `caller.` is no host's.
    const onCaller = nats.nc.subscribe(`kbexec.${pool}.caller.>`, { callback: () => void askedCaller++ });
    try {
      await forgeTask(pool, `kbexec.${pool}.tasks`);
      for (const lostMs of ['-1', '0.001', 'soon', '1e12']) await forgeTask(pool, caller, { 'Kb-Lost-Ms': lostMs });
      // An execution id no host gives (core makes or takes one of 1 to 128 characters).
      await forgeTask(pool, caller, { 'Kb-Exec-Id': '' });
      await forgeTask(pool, 'somewhere.else');
      await forgeTask(pool, `${caller}.more`);
      await sleep(3000);
    } finally {
      onTasks.unsubscribe();
      onCaller.unsubscribe();
    }
    // Before: the worker sent its `started` into the tasks subject, then `withdrawn`, and handed the task back, again and again.
    expect(kinds).toEqual(['task', 'task', 'task', 'task', 'task', 'task', 'task', 'task']);
    expect(askedCaller).toBe(0);
    expect((await nats.jsm.streams.info(`KBEXEC_${pool}`)).state.messages).toBe(0);
    const result = await host(pool).execute({ pluginId: BASIC, handlerId: 'echo', input: 2 }, { timeoutMs: 20_000 });
    expectOk(result);
  }, 30_000);
});

describe('a presence a peer forged', () => {
  it('one of another shape than workers send is dropped: health() and stats() answer, and do not count it', async () => {
    const pool = newPool('forged-presence');
    await worker(pool);
    const backend = host(pool);
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }, { timeoutMs: 20_000 }));
    const forged = [
      { id: 'fake1', host: 'h', pid: 1, concurrency: 1e6, running: 0, heartbeatMs: 1e12, backend: 'x', isolation: { active: 'none', layers: 5, reason: 'x' }, plugins: [] },
      { id: 'fake2', host: 'h', pid: 1, concurrency: 'lots', running: 0, heartbeatMs: 1000, backend: 'x' },
      { id: { toString: null }, host: 'h', pid: 1, concurrency: 1, running: 0, heartbeatMs: 1000, backend: 'x' },
      null,
      'not a presence',
    ];
    for (const body of forged) nats.nc.publish(`kbexec.${pool}.presence`, v8.serialize(body));
    nats.nc.publish(`kbexec.${pool}.presence`, new Uint8Array([1, 2, 3]));
    await nats.nc.flush();
    await sleep(500);
    // Before, the first made health() reject (a TypeError) for as long as it was listed: for ever.
    const health = await backend.health();
    expect(health.ok).toBe(true);
    expect((await backend.stats()).runners).toMatchObject({ workersSeen: 1 });
  }, 30_000);

  it("one that does not say its isolation, beside a worker whose handlers share its thread: health() says none is in force, not unknown", async () => {
    const pool = newPool('silent-presence');
    await worker(pool);
    const backend = host(pool);
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }, { timeoutMs: 20_000 }));
    const silent = { id: 'silent', host: 'h', pid: 1, concurrency: 1, running: 0, heartbeatMs: 1000, backend: 'x', plugins: [] };
    nats.nc.publish(`kbexec.${pool}.presence`, v8.serialize(silent));
    await nats.nc.flush();
    await waitFor(async () => (await backend.health()).isolation.reason.includes('differ'), 5000);
    const { isolation } = await backend.health();
    expect(isolation.active).toBe('none');
    expect(isolation.reason).toContain('unknown: silent (x)');
  }, 30_000);

  it("one with a worker's id and a host name holding control characters: the worker's warning writes them out", async () => {
    const pool = newPool('forged-twin');
    const running = await worker(pool);
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => warnings.push(warning);
    process.on('warning', onWarning);
    try {
      // ESC sets a terminal's title, CSI (a C1 control) starts an escape sequence as ESC does, U+202E turns the rest of the line round.
      const forged = { id: running.id, host: 'evil\x1b]0;x\x07\u009b31m\u202e', pid: 1, concurrency: 1, running: 0, heartbeatMs: 1000, backend: 'in-process' };
      nats.nc.publish(`kbexec.${pool}.presence`, v8.serialize(forged));
      await nats.nc.flush();
      await expect.poll(() => warnings.filter((w) => (w as { code?: string }).code === 'KB_PLUGIN_WORKER_ID_IN_USE').length, { timeout: 5000 }).toBe(1);
    } finally {
      process.off('warning', onWarning);
    }
    const warning = warnings.find((w) => (w as { code?: string }).code === 'KB_PLUGIN_WORKER_ID_IN_USE')!;
    expect(warning.message).toContain('(pid 1 on evil\\x1b]0;x\\x07\\x9b31m\\u202e): hosts take the two for one');
    expect(warning.message).not.toMatch(/[\x00-\x1f\x7f-\x9f\u202e]/);
  }, 30_000);
});

describe('an input a peer sends a worker for a task that carries its own', () => {
  it('is not taken: the handler gets the input its task carries (a peer with a host\'s credentials replaced it)', async () => {
    const pool = newPool('forged-input');
    const running = await worker(pool);
    const caller = `kbexec.${pool}.caller.evil`;
    let result: unknown;
    const sub = nats.nc.subscribe(caller, {
      callback: (_error, msg) => {
        const kind = msg.headers?.get('Kb-Kind');
        if (kind === 'started') {
          // Ahead of the accept, on the same connection: the worker reads it first.
          const h = headers();
          for (const [name, value] of Object.entries({ 'Kb-Kind': 'input', 'Kb-Exec-Id': msg.headers?.get('Kb-Exec-Id') ?? '', 'Kb-Reply': caller })) h.set(name, value);
          nats.nc.publish(`kbexec.${pool}.worker.${running.id}`, v8.serialize('forged'), { headers: h });
          msg.respond(v8.serialize({ accept: true, remainingMs: 10_000 }));
        } else if (kind === 'heartbeat') msg.respond(v8.serialize({ unknown: [] }));
        else if (kind === 'result') result = v8.deserialize(msg.data);
      },
    });
    try {
      await forgeTask(pool, caller);
      await expect.poll(() => result, { timeout: 20_000 }).toBeDefined();
    } finally {
      sub.unsubscribe();
    }
    // forgeTask's task echoes its input, 1.
    expect(result).toMatchObject({ ok: true, data: 1 });
  }, 30_000);
});

describe('a body in parts a peer sends a host', () => {
  it('is held for none of its executions, and for one of them one body per lane at a time (its outbox, its result); a body over the host limit is refused', async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const pool = newPool('forged-parts');
    await worker(pool);
    // The host's subject, as anyone who sees its tasks learns it.
    let caller = '';
    const onTasks = nats.nc.subscribe(`kbexec.${pool}.tasks`, { callback: (_error, msg) => void (caller ||= msg.headers?.get('Kb-Reply') ?? '') });
    const backend = new QueueBackend({ connection: { servers: nats.url }, pool, plugins: [fixturePlugins.basic], maxPayloadBytes: 1024 * 1024 });
    closing.push(() => backend.shutdown({ timeoutMs: 2000 }));
    const stop = new AbortController();
    // Running until the test stops it: the floods below took over 30 s with a third of a core.
    const running = backend.execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 120_000 }, executionId: 'held-open' }, { timeoutMs: 120_000, signal: stop.signal });
    await expect.poll(() => caller, { timeout: 10_000 }).not.toBe('');
    onTasks.unsubscribe();
    const part = new Uint8Array(512 * 1024).fill(7);
    const send = async (executionId: string, transfer: string, kind = 'result', index = 0) => {
      const h = headers();
      for (const [name, value] of Object.entries({ 'Kb-Kind': kind, 'Kb-Exec-Id': executionId, 'Kb-Part': `${index}/30`, 'Kb-Transfer': transfer })) h.set(name, value);
      const answer = await nats.nc.request(caller, part, { headers: h, timeout: 5000 });
      return answer.headers?.get('Kb-Refused') ?? 'taken';
    };
    const heldAfter = async (flood: () => Promise<unknown>) => {
      gc();
      const before = process.memoryUsage().arrayBuffers;
      await flood();
      return heldSince(before, gc);
    };
    // For its own execution: what a worker sends comes in two lanes (its outbox, its result), each
    // body begun anew taking the place of the last: 300 fresh transfers hold one part each at most.
    const own = await heldAfter(async () => {
      for (let i = 0; i < 300; i++) await send('held-open', `own-${i}`, ['log', 'event', 'rpc', 'result'][i % 4]);
    });
    // For no execution of the host's: nothing held. Before, each flood held some 150 MB until the host's sweep.
    const none = await heldAfter(async () => {
      for (let i = 0; i < 300; i++) await send('no-such-execution', `t-${i}`);
    });
    expect({ own: own < HELD_BOUND, none: none < HELD_BOUND }).toEqual({ own: true, none: true });
    // A part past the host's limit for one body is refused, naming it.
    const h = headers();
    for (const [name, value] of Object.entries({ 'Kb-Kind': 'result', 'Kb-Exec-Id': 'held-open', 'Kb-Part': '0/3', 'Kb-Transfer': 'too-big' })) h.set(name, value);
    const refused = await nats.nc.request(caller, new Uint8Array(2 * 1024 * 1024), { headers: h, timeout: 5000 });
    expect(refused.headers?.get('Kb-Refused')).toBe(String(1024 * 1024));
    stop.abort();
    expect((await running).ok).toBe(false);
  }, 120_000);
});

describe('a body in parts a peer sends a worker', () => {
  it("is held for an execution's replies no more than its handler has calls in flight: a peer with a host's credentials had reply after reply held", async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const pool = newPool('forged-replies');
    const running = await worker(pool);
    const caller = `kbexec.${pool}.caller.evil`;
    let started = false;
    const sub = nats.nc.subscribe(caller, {
      callback: (_error, msg) => {
        const kind = msg.headers?.get('Kb-Kind');
        if (kind === 'started') msg.respond(v8.serialize({ accept: true, remainingMs: 60_000 }));
        else if (kind === 'heartbeat') msg.respond(v8.serialize({ unknown: [] }));
        else if (msg.reply) msg.respond();
        if (kind === 'started') started = true;
      },
    });
    // Its own execution, whose handler makes no call.
    const executionId = 'replies-held';
    const task = headers();
    for (const [name, value] of Object.entries({ 'Kb-Kind': 'task', 'Kb-Exec-Id': executionId, 'Kb-Reply': caller, 'Kb-Lost-Ms': '3000', 'Kb-Protocol': '2' })) task.set(name, value);
    const body = { executionId, pluginId: BASIC, pluginVersion: '1.0.0', handlerId: 'slow', input: { ms: 60_000 }, inputFollows: false, context: {}, timeoutMs: 60_000, workspace: false, keepWorkspace: false };
    await nats.nc.request(`kbexec.${pool}.tasks`, v8.serialize(body), { headers: task, timeout: 5000 });
    await expect.poll(() => started, { timeout: 10_000 }).toBe(true);
    const part = new Uint8Array(512 * 1024).fill(7);
    gc();
    const before = process.memoryUsage().arrayBuffers;
    for (let i = 0; i < 300; i++) {
      const h = headers();
      for (const [name, value] of Object.entries({ 'Kb-Kind': 'rpc-reply', 'Kb-Exec-Id': executionId, 'Kb-Reply': caller, 'Kb-Part': '0/30', 'Kb-Transfer': `reply-${i}` })) h.set(name, value);
      await nats.nc.request(`kbexec.${pool}.worker.${running.id}`, part, { headers: h, timeout: 5000 });
    }
    const held = await heldSince(before, gc);
    sub.unsubscribe();
    // Before, some 150 MB until the worker's sweep (a minute after the last part).
    expect(held).toBeLessThan(HELD_BOUND);
  }, 60_000);
});

describe('a log line or result a peer forged for a running execution', () => {
  it('of another shape than workers send fails it as a protocol fault (WORKER_CRASHED), not as a handler that threw undefined or a log line without a level', async () => {
    const pool = newPool('forged-output');
    await worker(pool);
    let caller = '';
    const onTasks = nats.nc.subscribe(`kbexec.${pool}.tasks`, { callback: (_error, msg) => void (caller ||= msg.headers?.get('Kb-Reply') ?? '') });
    const backend = host(pool);
    const forge = (executionId: string, kind: string, body: unknown) => {
      const h = headers();
      h.set('Kb-Kind', kind);
      h.set('Kb-Exec-Id', executionId);
      nats.nc.publish(caller, v8.serialize(body), { headers: h });
    };
    const cases: Array<[string, unknown]> = [['log', {}], ['log', { level: 'nonsense', message: { a: 1 }, stream: 42 }], ['result', {}], ['result', { ok: false }]];
    for (const [n, [kind, body]] of cases.entries()) {
      const logs: unknown[] = [];
      const executionId = `forged-output-${n}`;
      const running = backend.execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 20_000 }, executionId }, { timeoutMs: 30_000, onLog: (entry) => logs.push(entry) });
      await expect.poll(() => caller, { timeout: 10_000 }).not.toBe('');
      await sleep(300);
      forge(executionId, kind, body);
      const result = await running;
      expect(result.ok, `${kind} ${JSON.stringify(body)}`).toBe(false);
      expect(result.ok ? undefined : result.error, `${kind} ${JSON.stringify(body)}`).toMatchObject({ code: 'WORKER_CRASHED', details: { reason: 'protocol' } });
      expect(logs).toEqual([]);
    }
    onTasks.unsubscribe();
  }, 60_000);
});

describe('a task a peer forged with a body no host sends', () => {
  it('is claimed and refused, naming the field (VALIDATION_ERROR), not run: each `workspace` value made the worker a local backend of its own, never shut down', async () => {
    const pool = newPool('forged-body');
    await worker(pool);
    const caller = `kbexec.${pool}.caller.evil`;
    const results = new Map<string, unknown>();
    const sub = nats.nc.subscribe(caller, {
      callback: (_error, msg) => {
        const kind = msg.headers?.get('Kb-Kind');
        if (kind === 'started') msg.respond(v8.serialize({ accept: true, remainingMs: 10_000 }));
        else if (kind === 'heartbeat') msg.respond(v8.serialize({ unknown: [] }));
        else if (kind === 'result') results.set(msg.headers?.get('Kb-Exec-Id') ?? '', v8.deserialize(msg.data));
      },
    });
    const task = (id: string, fields: Record<string, unknown>) => ({ executionId: id, pluginId: BASIC, pluginVersion: '1.0.0', handlerId: 'echo', input: 1, inputFollows: false, context: {}, timeoutMs: 5000, workspace: false, keepWorkspace: false, ...fields });
    const malformed = (path: string) => ({ path, reason: 'malformed-task' });
    const forged: Array<[string, (id: string) => unknown, Record<string, unknown>, Record<string, string>?]> = [
      ['workspace-3', (id) => task(id, { workspace: 3 }), malformed('workspace')],
      ['workspace-x', (id) => task(id, { workspace: 'x' }), malformed('workspace')],
      ['plugin-object', (id) => task(id, { pluginId: {} }), malformed('pluginId')],
      ['another-id', () => task('someone-elses', {}), malformed('executionId')],
      // Before: "Handler threw undefined".
      ['null', () => null, malformed('task')],
      // Another protocol's task is refused as such, whatever its body.
      ['other-protocol', (id) => task(id, { workspace: 3 }), { reason: 'protocol-mismatch', hostProtocol: 1, workerProtocol: QUEUE_PROTOCOL_VERSION }, { 'Kb-Protocol': '1' }],
    ];
    try {
      for (const [id, body, , extra] of forged) await forgeTask(pool, caller, { 'Kb-Exec-Id': id, ...extra }, body);
      await expect.poll(() => results.size, { timeout: 20_000 }).toBe(forged.length);
    } finally {
      sub.unsubscribe();
    }
    for (const [id, , details] of forged) expect(results.get(id), id).toMatchObject({ ok: false, error: { name: 'ValidationError', details } });
    expectOk(await host(pool).execute({ pluginId: BASIC, handlerId: 'echo', input: 3 }, { timeoutMs: 20_000 }));
  }, 40_000);
});

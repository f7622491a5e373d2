import { fileURLToPath } from 'node:url';
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { AbortedError, HandlerError, HandlerNotFoundError, PermissionDeniedError, TimeoutError, ValidationError, serializeError, type PermissionSpec, type Platform } from '../src/index.js';
import { HostSession, PROTOCOL_VERSION, RunnerSession, unwrapRunnerResult, type HostToRunner, type RunnerResult, type RunnerTask, type RunnerToHost } from '../src/backend-kit.js';
import { invokePlatform } from '../src/host/platform-gateway.js';
import { afterEach, describe, expect, it } from 'vitest';

const ENTRY = fileURLToPath(new URL('./fixtures/handlers/protocol.mjs', import.meta.url));
const PERMISSIONS: PermissionSpec = { platform: { cache: ['get', 'set', 'fail', 'slow'] } };

interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
}
function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

class HostCache {
  readonly store = new Map<string, unknown>();
  readonly slowCall = deferred<string>();
  async get(key: string) {
    return this.store.get(key);
  }
  async set(key: string, value: unknown) {
    this.store.set(key, value);
  }
  async fail() {
    throw Object.assign(new RangeError('cache is down'), { stored: 3 });
  }
  slow() {
    return this.slowCall.promise;
  }
}

/** Lets every pending promise callback run. */
const flush = () => new Promise<void>((resolve) => setImmediate(resolve));

const ports: MessagePort[] = [];
afterEach(() => {
  for (const port of ports.splice(0)) port.close();
  delete (globalThis as Record<string, unknown>).__kbProtocolPending;
  delete (globalThis as Record<string, unknown>).__kbProtocolPlatform;
});

/**
 * Both ends of the protocol over a real MessageChannel, as a worker-pool backend wires them:
 * the host posts `run`, the runner answers with logs/events/rpc and one `result`.
 */
function connect(exportName: string, options: { input?: unknown; channel?: boolean; permissions?: PermissionSpec; beginBy?: number; mayBegin?: () => boolean } = {}) {
  const { port1: hostPort, port2: runnerPort } = new MessageChannel();
  ports.push(hostPort, runnerPort);
  const cache = new HostCache();
  const platform: Platform = { cache };
  const task: RunnerTask = {
    executionId: `exec-${exportName}`,
    pluginId: '@t/protocol',
    handlerId: exportName,
    pluginRoot: fileURLToPath(new URL('./fixtures/handlers/', import.meta.url)),
    entryPath: ENTRY,
    exportName,
    input: options.input,
    context: { requestId: 'req-1', host: { kind: 'test' } },
    workspaceDir: undefined,
    permissions: options.permissions ?? PERMISSIONS,
    timeoutMs: 10_000,
    memoryMb: undefined,
    ...(options.channel ? { channel: { connectionId: 'conn-1', path: '/chat' } } : {}),
    ...(options.beginBy !== undefined ? { beginBy: options.beginBy } : {}),
  };

  // Runner side.
  let session: RunnerSession | undefined;
  const fromHost: HostToRunner[] = [];
  runnerPort.on('message', (message: HostToRunner) => {
    fromHost.push(message);
    if (message.type === 'run') {
      session = new RunnerSession(message.task, (out) => runnerPort.postMessage(out));
      void session.run().then((result) => runnerPort.postMessage(result));
    } else {
      session?.handle(message);
    }
  });

  // Host side.
  const logs: Array<{ level: string; message: string; fields: unknown; stream: unknown }> = [];
  const events: unknown[] = [];
  const channelCalls: Array<[string, unknown[]]> = [];
  const fromRunner: RunnerToHost[] = [];
  const sentToRunner: HostToRunner[] = [];
  const done = deferred<RunnerResult>();
  const firstEvent = deferred<unknown>();
  const host = new HostSession(
    {
      log: (level, message, fields, stream) => logs.push({ level, message, fields, stream }),
      emit: (event) => {
        events.push(event);
        firstEvent.resolve(event);
      },
      callPlatform: (service, method, args) => invokePlatform(platform, task.permissions, task, service, method, args),
      callChannel: async (method, args) => {
        channelCalls.push([method, args]);
        return method === 'broadcast' ? 3 : undefined;
      },
      mayBegin: options.mayBegin ?? (() => true),
    },
    (message) => {
      sentToRunner.push(message);
      hostPort.postMessage(message);
    },
  );
  hostPort.on('message', (message: RunnerToHost) => {
    fromRunner.push(message);
    const result = host.handle(message);
    if (result) done.resolve(result);
  });
  hostPort.postMessage({ type: 'run', task } satisfies HostToRunner);

  return { task, cache, host, hostPort, logs, events, channelCalls, fromRunner, fromHost, sentToRunner, firstEvent: firstEvent.promise, result: done.promise };
}

describe('RunnerSession ⇄ HostSession over a MessageChannel', () => {
  it('round-trips platform calls and delivers logs and events in order', async () => {
    const run = connect('roundTrip', { input: { when: new Date(0), list: [1, 2, 3] } });
    const result = await run.result;
    expect(result).toEqual({
      type: 'result',
      ok: true,
      data: { stored: { when: new Date(0), list: [1, 2, 3] }, executionId: 'exec-roundTrip', context: { requestId: 'req-1', host: { kind: 'test' } } },
    });
    expect(unwrapRunnerResult(result)).toEqual((result as { data: unknown }).data);
    expect(run.cache.store.get('k')).toEqual({ when: new Date(0), list: [1, 2, 3] });
    expect(run.logs).toEqual([
      { level: 'info', message: 'storing', fields: { key: 'k' }, stream: 'logger' },
      { level: 'warn', message: '{"not":"a string"}', fields: undefined, stream: 'logger' },
      { level: 'error', message: 'RangeError: out of range', fields: undefined, stream: 'logger' },
      { level: 'debug', message: 'undefined', fields: undefined, stream: 'logger' },
    ]);
    expect(run.events).toEqual([
      { type: 'progress', percent: 50 },
      { type: 'progress', percent: 100 },
    ]);
    const kinds = run.fromRunner.map((m) => (m.type === 'rpc' ? `rpc:${m.service}.${m.method}` : m.type));
    expect(kinds).toEqual(['log', 'rpc:cache.set', 'rpc:cache.get', 'event', 'log', 'log', 'log', 'event', 'result']);
    expect(run.sentToRunner.map((m) => m.type)).toEqual(['rpc-reply', 'rpc-reply']);
  });

  it('denies an undeclared platform call inside the handler with PermissionDeniedError naming service and method', async () => {
    const run = connect('deniedCaught');
    const data = unwrapRunnerResult(await run.result) as Record<string, unknown>;
    expect(data).toMatchObject({ name: 'PermissionDeniedError', code: 'PERMISSION_DENIED', isError: true, family: true });
    expect(data.message).toContain('platform.storage.put');
    expect(data.details).toMatchObject({ service: 'storage', method: 'put', pluginId: '@t/protocol' });
  });

  it('reports a denied call the handler lets escape as PERMISSION_DENIED', async () => {
    const run = connect('deniedEscapes');
    const result = await run.result;
    expect(result.ok).toBe(false);
    expect(() => unwrapRunnerResult(result)).toThrow(PermissionDeniedError);
    try {
      unwrapRunnerResult(result);
    } catch (error) {
      expect((error as PermissionDeniedError).message).toContain('platform.cache.delete');
    }
  });

  it('carries the host service’s own error back to the handler', async () => {
    const data = unwrapRunnerResult(await connect('hostError').result);
    expect(data).toMatchObject({ name: 'RangeError', message: 'cache is down', range: true, stored: 3, family: false });
  });

  it('turns values that cannot be sent into ValidationError inside the handler', async () => {
    const data = unwrapRunnerResult(await connect('badArgs').result) as Array<Record<string, unknown>>;
    expect(data).toHaveLength(2);
    expect(data[0]).toMatchObject({ code: 'VALIDATION_ERROR', family: true });
    expect(data[0]!.message).toContain('platform.cache.set arguments');
    expect(data[1]).toMatchObject({ code: 'VALIDATION_ERROR' });
    expect(data[1]!.message).toContain('ctx.emit() event');
  });

  it('rejects a call still pending when the handler returns, and drops the late reply', async () => {
    const run = connect('leavesCallPending');
    const result = await run.result;
    expect(unwrapRunnerResult(result)).toBe('returned early');
    const outcome = await (globalThis as { __kbProtocolPending?: Promise<Record<string, unknown>> }).__kbProtocolPending;
    expect(outcome).toMatchObject({ settled: 'rejected', code: 'ABORTED', name: 'AbortedError' });
    // It names the call it ended, in its message and its details (docs/errors.md: ABORTED).
    expect(outcome).toMatchObject({ message: 'The execution ended while platform.cache.slow was pending', details: { phase: 'rpc', service: 'cache', method: 'slow' } });

    // The host answers late: HostSession is closed and sends nothing.
    run.cache.slowCall.resolve('too late');
    await run.cache.slowCall.promise;
    await flush();
    expect(run.sentToRunner).toEqual([]);

    // A platform call made after the end never leaves the runner.
    const platform = (globalThis as { __kbProtocolPlatform?: { cache: { get(k: string): Promise<unknown> } } }).__kbProtocolPlatform!;
    const late = await platform.cache.get('k').catch((error: unknown) => error);
    expect(late).toBeInstanceOf(AbortedError);
    expect(late).toMatchObject({ message: 'platform.cache.get was called after the execution ended', details: { phase: 'ended', service: 'cache', method: 'get' } });
    expect(run.fromRunner.filter((m) => m.type === 'rpc')).toHaveLength(1);
  });

  it('a call the handler never awaited is rejected without becoming an unhandled rejection', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const run = connect('firesAndForgets');
      expect(unwrapRunnerResult(await run.result)).toBe('fired');
      for (let i = 0; i < 5; i++) await flush();
      expect(run.fromRunner.filter((m) => m.type === 'rpc')).toHaveLength(1);
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('returns a thrown Error subclass as HandlerError with own props and cause chain', async () => {
    const result = await connect('throwsCustom').result;
    expect(result.ok).toBe(false);
    let error: unknown;
    try {
      unwrapRunnerResult(result);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(HandlerError);
    expect(error).toMatchObject({ code: 'HANDLER_ERROR', message: 'upstream failed', details: { name: 'UpstreamError' } });
    expect((error as Error).stack).toContain('upstream failed');
    const cause = (error as Error).cause as Error & Record<string, unknown>;
    expect(cause).toMatchObject({ name: 'UpstreamError', status: 502, body: { reason: 'bad gateway' } });
    expect(cause.cause).toBeInstanceOf(TypeError);
    expect((cause.cause as Error).message).toBe('root cause');
  });

  it('returns a thrown non-Error as HandlerError', async () => {
    const result = await connect('throwsNumber').result;
    expect(() => unwrapRunnerResult(result)).toThrow(HandlerError);
    expect(() => unwrapRunnerResult(result)).toThrow(/a number: 42/);
  });

  it('delivers a cancel from the host to ctx.signal with the error as its reason', async () => {
    const run = connect('waitsForCancel');
    expect(await run.firstEvent).toBe('waiting');
    run.hostPort.postMessage({ type: 'cancel', reason: serializeError(new TimeoutError('too slow', { details: { timeoutMs: 5 } })) } satisfies HostToRunner);
    const data = unwrapRunnerResult(await run.result);
    expect(data).toMatchObject({ name: 'TimeoutError', code: 'TIMEOUT', message: 'too slow', details: { timeoutMs: 5 }, family: true });
  });

  it('routes ctx.channel calls to the host', async () => {
    const run = connect('channelUser', { input: 'hi', channel: true });
    const data = unwrapRunnerResult(await run.result);
    expect(data).toEqual({ connectionId: 'conn-1', path: '/chat', delivered: 3 });
    expect(run.channelCalls).toEqual([
      ['send', [{ echo: 'hi' }]],
      ['broadcast', ['all', { exclude: ['conn-1'] }]],
    ]);
  });

  it('moves large values both ways', async () => {
    const input = { blob: 'x'.repeat(8 * 1024 * 1024) };
    const data = unwrapRunnerResult(await connect('large', { input }).result);
    expect(data).toEqual({ length: input.blob.length, same: false, equal: true });
  });

  it('validates input with the handler’s schema, naming the path', async () => {
    expect(unwrapRunnerResult(await connect('validated', { input: { n: 4 } }).result)).toEqual({ doubled: 8 });
    const bad = await connect('validated', { input: { n: 'four' } }).result;
    expect(() => unwrapRunnerResult(bad)).toThrow(ValidationError);
    expect(() => unwrapRunnerResult(bad)).toThrow(/input\.n/);
  });

  it('reports a missing or unusable export as HANDLER_NOT_FOUND', async () => {
    for (const exportName of ['nope', 'notAHandler']) {
      const result = await connect(exportName).result;
      expect(() => unwrapRunnerResult(result)).toThrow(HandlerNotFoundError);
      expect(() => unwrapRunnerResult(result)).toThrow(new RegExp(exportName));
    }
  });
});

describe('a task with beginBy', () => {
  it('begins without asking the host while its beginBy is ahead', async () => {
    let asked = 0;
    const run = connect('roundTrip', { input: 1, beginBy: Date.now() + 60_000, mayBegin: () => (asked++, false) });
    expect((await run.result).ok).toBe(true);
    expect(asked).toBe(0);
    expect(run.fromRunner.some((m) => m.type === 'may-begin')).toBe(false);
  });

  it('asks the host once its beginBy has passed, and begins when the host says it may', async () => {
    let asked = 0;
    const run = connect('roundTrip', { input: 1, beginBy: Date.now() - 1, mayBegin: () => (asked++, true) });
    expect((await run.result).ok).toBe(true);
    expect(asked).toBe(1);
    expect(run.sentToRunner).toContainEqual({ type: 'begin', ok: true });
  });

  it('does not begin the handler when the host says no: no log, event or platform call, an ABORTED result', async () => {
    const run = connect('roundTrip', { input: 1, beginBy: Date.now() - 1, mayBegin: () => false });
    const result = await run.result;
    expect(result.ok).toBe(false);
    expect(() => unwrapRunnerResult(result)).toThrow(/not begun/);
    expect(run.logs).toEqual([]);
    expect(run.events).toEqual([]);
    expect(run.cache.store.size).toBe(0);
    expect(run.fromRunner.map((m) => m.type)).toEqual(['may-begin', 'result']);
  });

  it('does not begin the handler when a cancel comes while the runner waits for the answer', async () => {
    const run = connect('roundTrip', { input: 1, beginBy: Date.now() - 1, mayBegin: () => true });
    // The cancel is posted before the host's answer can reach the runner: it settles the question as a no.
    run.hostPort.postMessage({ type: 'cancel', reason: serializeError(new AbortedError('stop', { details: { phase: 'running' } })) } satisfies HostToRunner);
    const result = await run.result;
    expect(result.ok).toBe(false);
    expect(run.cache.store.size).toBe(0);
  });
});

describe('HostSession on its own', () => {
  it('ignores unknown or malformed messages, and returns the result message', () => {
    const sent: HostToRunner[] = [];
    const host = new HostSession(
      {
        log: () => undefined,
        emit: () => undefined,
        callPlatform: async () => undefined,
        callChannel: async () => undefined,
        mayBegin: () => true,
      },
      (m) => sent.push(m),
    );
    expect(host.handle({ type: 'ready', version: PROTOCOL_VERSION })).toBeUndefined();
    expect(host.handle({ type: 'nonsense' } as unknown as RunnerToHost)).toBeUndefined();
    expect(host.handle(undefined as unknown as RunnerToHost)).toBeUndefined();
    const result: RunnerResult = { type: 'result', ok: true, data: 1 };
    expect(host.handle(result)).toBe(result);
    expect(sent).toEqual([]);
  });

  it('answers may-begin once: a runner asks once per execution, and more are not left to pile up replies', () => {
    const sent: HostToRunner[] = [];
    let asked = 0;
    const host = new HostSession({ log: () => undefined, emit: () => undefined, callPlatform: async () => undefined, callChannel: async () => undefined, mayBegin: () => (asked++, true) }, (m) => sent.push(m));
    for (let i = 0; i < 3; i++) expect(host.handle({ type: 'may-begin' })).toBeUndefined();
    expect(sent).toEqual([{ type: 'begin', ok: true }]);
    expect(asked).toBe(1);
  });

  it('does not answer may-begin after a log line, an event or a call: only a begun handler sends those, so the question is not its runtime\'s', () => {
    for (const first of [{ type: 'log', level: 'info', message: 'x' }, { type: 'event', event: 1 }, { type: 'rpc', id: 1, target: 'platform', service: 's', method: 'm', args: [] }] as RunnerToHost[]) {
      const sent: HostToRunner[] = [];
      let asked = 0;
      const host = new HostSession({ log: () => undefined, emit: () => undefined, callPlatform: async () => undefined, callChannel: async () => undefined, mayBegin: () => (asked++, false) }, (m) => sent.push(m));
      host.handle(first);
      host.handle({ type: 'may-begin' });
      expect(sent.filter((m) => m.type === 'begin')).toEqual([]);
      expect(asked).toBe(0);
    }
  });

  it('answers a result that cannot be sent with a ValidationError reply', async () => {
    const sent: HostToRunner[] = [];
    const host = new HostSession(
      {
        log: () => undefined,
        emit: () => undefined,
        callPlatform: async () => () => 'a function',
        callChannel: async () => undefined,
        mayBegin: () => true,
      },
      (m) => {
        structuredClone(m);
        sent.push(m);
      },
    );
    host.handle({ type: 'rpc', id: 7, target: 'platform', service: 's', method: 'm', args: [] });
    await flush();
    expect(sent).toHaveLength(1);
    expect(sent[0]).toMatchObject({ type: 'rpc-reply', id: 7, ok: false, error: { code: 'VALIDATION_ERROR' } });
  });
});

describe('RunnerSession on its own', () => {
  it('ignores replies to calls it never made', () => {
    const session = new RunnerSession({} as RunnerTask, () => undefined);
    expect(() => session.handle({ type: 'rpc-reply', id: 99, ok: true, value: 1 })).not.toThrow();
  });
});

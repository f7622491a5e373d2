import type { ExecutionEvent, LogEntry } from '@kb-labs/plugin-execution-core';
import { describe, expect, it } from 'vitest';
import { BASIC, HOSTILE, POOL, expectOk, okData, runners, useBackends } from './helpers.js';

const MB = 1024 * 1024;

class HostError extends Error {
  override name = 'HostError';
  code = 'E_HOST';
  retryable = true;
}

function blobService() {
  return {
    async echo(value: unknown) {
      return value;
    },
    async make(size: number) {
      return 'y'.repeat(size);
    },
    async fail() {
      return platformFail();
    },
    hang() {
      return new Promise(() => {});
    },
  };
}

function platformFail(): never {
  throw new HostError('the host said no', { cause: Object.assign(new TypeError('disk is read-only'), { errno: -30 }) });
}

describe('worker-pool: ctx.platform over the thread channel, logs and events', () => {
  const backends = useBackends();

  it('carries a 10 MB argument and a 10 MB result both ways', async () => {
    const backend = backends.make({ platform: { blob: blobService() }, permissions: { platform: { blob: true } } });
    const result = await backend.execute({ pluginId: POOL, handlerId: 'platform-big', input: { mb: 10 } }, { timeoutMs: 60_000 });
    const data = okData<{ echoed: number; echoedIntact: boolean; made: string }>(result);
    expect(data.echoed).toBe(10 * MB);
    expect(data.echoedIntact).toBe(true);
    expect(data.made.length).toBe(10 * MB);
  });

  it('answers many concurrent calls, each to its own caller', async () => {
    const backend = backends.make({ platform: { blob: blobService() }, permissions: { platform: { blob: true } } });
    const [a, b] = await Promise.all([
      backend.execute({ pluginId: POOL, handlerId: 'platform-many', input: { n: 500 } }),
      backend.execute({ pluginId: POOL, handlerId: 'platform-many', input: { n: 500 } }),
    ]);
    expect(okData(a)).toEqual({ n: 500, inOrder: true });
    expect(okData(b)).toEqual({ n: 500, inOrder: true });
  });

  it("brings a host error back whole: class name, message, code, own props, cause chain; its stack names the call, not the host's frames", async () => {
    const backend = backends.make({ platform: { blob: blobService() }, permissions: { platform: { blob: true } } });
    const data = okData(await backend.execute({ pluginId: POOL, handlerId: 'platform-error' }));
    expect(data).toEqual({
      threw: true,
      isError: true,
      name: 'HostError',
      message: 'the host said no',
      code: 'E_HOST',
      retryable: true,
      cause: { name: 'TypeError', message: 'disk is read-only', errno: -30 },
      stackMentionsHost: false,
      stack: 'HostError: the host said no\n    at platform.blob.fail (the host)',
    });
  });

  it('rejects a call still pending when the execution ends, and keeps the thread', async () => {
    const backend = backends.make({ maxThreads: 1, platform: { blob: blobService() }, permissions: { platform: { blob: true } } });
    const result = await backend.execute({ pluginId: POOL, handlerId: 'platform-pending' });
    expectOk(result);
    expect(result.meta.artifacts).toEqual(['pending-ABORTED.txt']);
    const next = await backend.execute({ pluginId: BASIC, handlerId: 'echo' });
    expectOk(next);
    expect(next.meta.workerId).toBe(result.meta.workerId);
    expect((await runners(backend)).crashed).toBe(0);
  });

  it("delivers the handler's stdout and stderr to onLog as lines, capped per execution", async () => {
    const backend = backends.make({ maxOutputPerStream: 10_000 });
    const logs: LogEntry[] = [];
    const result = await backend.execute({ pluginId: HOSTILE, handlerId: 'stdout-spam', input: { mb: 1 } }, { onLog: (entry) => logs.push(entry), timeoutMs: 20_000 });
    expect(okData(result)).toEqual({ lines: 1024 });
    const out = logs.filter((l) => l.stream === 'stdout');
    const err = logs.filter((l) => l.stream === 'stderr');
    expect(out.length).toBeGreaterThan(1);
    expect(out.length).toBeLessThan(20);
    expect(out[0]).toMatchObject({ level: 'info', message: 'x'.repeat(1023), executionId: result.meta.executionId });
    expect(out.at(-1)!.message).toMatch(/^\[output truncated: \d+ characters/);
    expect(err.map((l) => [l.level, l.message])).toEqual([['error', 'done spamming']]);
  });

  it('streams ctx.logger and ctx.emit to the host while the handler is still running', async () => {
    const logs: LogEntry[] = [];
    const events: ExecutionEvent[] = [];
    let open!: (value: string) => void;
    const gate = new Promise<string>((resolve) => {
      open = resolve;
    });
    const backend = backends.make({ platform: { gate: { open: () => gate } }, permissions: { platform: { gate: true } } });
    const result = await backend.execute(
      { pluginId: POOL, handlerId: 'stream-gate' },
      {
        timeoutMs: 10_000,
        onLog: (entry) => logs.push(entry),
        onEvent: (event) => {
          events.push(event);
          // The handler is parked on the gate: it can only get through if this arrived first.
          if ((event.event as { type: string }).type === 'at-gate' && logs.length === 1) open('opened');
        },
      },
    );
    expect(okData(result)).toEqual({ opened: 'opened' });
    expect(logs.map((l) => l.message)).toEqual(['before the gate']);
    expect(events.map((e) => e.event)).toEqual([{ type: 'at-gate' }, { type: 'through' }]);
  });
});

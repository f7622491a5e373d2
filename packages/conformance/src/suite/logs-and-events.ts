import { AsyncLocalStorage } from 'node:async_hooks';
import type { ExecutionEvent, LogEntry } from '@kb-labs/plugin-execution-core';
import { describe, expect, it } from 'vitest';
import { expectOk } from '../expect-result.js';
import { BASIC } from '../fixtures.js';
import type { SuiteContext } from '../suite-context.js';

export function describeLogsAndEvents(suite: SuiteContext): void {
  describe('logs and events', () => {
    streamTests(suite);
    callersContextTests(suite);
  });
}

/** A host that keeps a request's id in an AsyncLocalStorage reads it in its callbacks, as around its execute() call. */
function callersContextTests(suite: SuiteContext): void {
  it("onStart, onLog and onEvent run in the caller's async context (its AsyncLocalStorage store), never another caller's", async () => {
    const store = new AsyncLocalStorage<string>();
    const backend = suite.make({ maxConcurrency: 1 });
    for (const request of ['first', 'second', 'third']) {
      const seen: string[] = [];
      const record = (which: string) => () => void seen.push(`${which} ${store.getStore()}`);
      const result = await store.run(request, () => backend.execute({ pluginId: BASIC, handlerId: 'emits' }, { onStart: record('onStart'), onLog: record('onLog'), onEvent: record('onEvent') }));
      expectOk(result);
      // Before: on the queue backend every callback ran in the first request's store; on worker-pool, in none.
      expect([...new Set(seen)].sort()).toEqual([`onEvent ${request}`, `onLog ${request}`, `onStart ${request}`]);
    }
  });
}

/** Logger lines and events reach the host; host callbacks cannot break an execution. */
function streamTests(suite: SuiteContext): void {
  const { make } = suite;
  it('streams ctx.logger lines and ctx.emit events to the host', async () => {
    const backend = make();
    const logs: LogEntry[] = [];
    const events: ExecutionEvent[] = [];
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'emits', input: { steps: 3 } }, { onLog: (l) => logs.push(l), onEvent: (e) => events.push(e) });
    expectOk(result);
    expect(events.map((e) => e.event)).toEqual([1, 2, 3].map((step) => ({ type: 'progress', step, of: 3 })));
    expect(events.every((e) => e.executionId === result.meta.executionId)).toBe(true);
    const mine = logs.filter((l) => l.stream === 'logger');
    expect(mine.map((l) => l.level)).toEqual(['debug', 'info', 'info', 'info', 'warn', 'error']);
    expect(mine[0]).toMatchObject({ message: 'starting', fields: { steps: 3 }, executionId: result.meta.executionId });
    expect(mine[5]).toMatchObject({ message: 'not really an error', fields: { code: 7 } });
  });

  it('a logger line whose fields are not an object (console-style) is delivered with them as { value }', async () => {
    const backend = make();
    const logs: LogEntry[] = [];
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'emits', input: { oddFields: true } }, { onLog: (l) => logs.push(l) });
    expectOk(result);
    expect(result.data).toBe('logged');
    const fields = logs.filter((l) => l.stream === 'logger').map((l) => l.fields);
    expect(fields).toEqual([{ value: 'alice' }, { value: 42 }, { value: true }, { value: [1, 2] }, undefined, { value: '5n' }, { value: 'Symbol(s)' }]);
  });

  it('a logger message longer than 64 Ki characters is cut there, saying how many characters were left out', async () => {
    const backend = make();
    const logs: LogEntry[] = [];
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'emits', input: { longMessage: 70_000 } }, { onLog: (l) => logs.push(l) });
    expectOk(result);
    const long = logs.find((l) => l.message.startsWith('xxx'));
    expect(long?.message).toBe(`${'x'.repeat(64 * 1024)}… [${70_000 - 64 * 1024} more characters]`);
  });

  it('an event that refers back to itself (a tree with parent links) arrives with its cycle, as a result does', async () => {
    const backend = make();
    const events: Array<{ event: unknown }> = [];
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'emits', input: { cycle: true } }, { onEvent: (e) => events.push(e) });
    // Before, on worker-pool: VALIDATION_ERROR too-deep, "nested more than 1000 levels deep".
    expectOk(result);
    expect(events).toHaveLength(1);
    const tree = events[0]!.event as { type: string; children: Array<{ name: string; parent: unknown }> };
    expect(tree.type).toBe('tree');
    expect(tree.children[0]!.parent).toBe(tree);
  });

  it('what a getter of the result logs or emits as the result is copied comes after the result: dropped on every backend', async () => {
    const backend = make();
    const said: unknown[] = [];
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'emits', input: { fromResultGetter: true } }, { onLog: (l) => said.push(l.message), onEvent: (e) => said.push(e.event) });
    expectOk(result);
    expect(result.data).toEqual({ x: 1 });
    await new Promise((resolve) => setTimeout(resolve, 100));
    // Before, in-process delivered them (its result is copied where the handler runs).
    expect(said).toEqual([]);
  });

  it('an event that cannot be sent throws in the handler, as often as it tries, and later events still arrive', async () => {
    const backend = make();
    const events: ExecutionEvent[] = [];
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'emits-refused', input: { n: 10_000 } }, { onEvent: (e) => events.push(e), timeoutMs: 20_000 });
    expectOk(result);
    expect(result.data).toMatchObject({ refused: 10_000 });
    expect((result.data as { message: string }).message).toMatch(/cannot be sent across the execution boundary/);
    expect(events.map((e) => (e.event as { type: string }).type)).toEqual(['after']);
  });

  it.runIf(suite.capabilities.capturesOutput !== false)('stdout and stderr are read as UTF-8 bytes: a character cut between two writes arrives whole, what is not UTF-8 as U+FFFD', async () => {
    const backend = make();
    const logs: LogEntry[] = [];
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'prints-bytes' }, { onLog: (l) => logs.push(l) });
    expectOk(result);
    const lines = (stream: string) => logs.filter((l) => l.stream === stream).map((l) => l.message);
    // Before, on worker-pool (the subprocess backend reads pipes, and did not): 'price: 5 \uFFFD\uFFFD\uFFFD', then a hex
    // string taken as text ('6f6b0a\uFFFD'), and the lone surrogate kept as it was written.
    expect(lines('stdout')).toEqual(['price: 5 €', 'ok', '\uFFFD']);
    expect(lines('stderr')).toEqual(['lone \uFFFD surrogate']);
  });

  it('ignores host callbacks that throw', async () => {
    const backend = make();
    const result = await backend.execute(
      { pluginId: BASIC, handlerId: 'emits' },
      {
        onLog: () => {
          throw new Error('host bug');
        },
        onEvent: () => {
          throw new Error('host bug');
        },
      },
    );
    expectOk(result);
  });

  it('ignores host callbacks that are async and reject, without an unhandled rejection', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const backend = make();
      let calls = 0;
      const sinkDown = async () => {
        calls++;
        throw new Error('log sink down');
      };
      const result = await backend.execute({ pluginId: BASIC, handlerId: 'emits' }, { onLog: sinkDown, onEvent: sinkDown });
      expectOk(result);
      expect(calls).toBeGreaterThan(1);
      // Node reports an unhandled rejection after the microtasks of the turn it happened in.
      await new Promise((resolve) => setTimeout(resolve, 20));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
}

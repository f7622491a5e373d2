import { describe, expect, it } from 'vitest';
import { holdEventLoop } from '@kb-labs/plugin-execution-conformance';
import { BASIC, HOSTILE, POOL, expectError, expectOk, okData, runners, useBackends } from './helpers.js';

/**
 * A gate for ExecuteOptions.outputPace: closed at the `at`-th event, opened `forMs` later (never, if
 * undefined; or by `open()`). `asked` counts the outputPace calls that found it closed.
 */
function gateAt(at: number, forMs?: number) {
  const seen = { delivered: 0, whenOpened: -1, asked: 0 };
  let gate: Promise<void> | undefined;
  let opener: (() => void) | undefined;
  const open = () => {
    seen.whenOpened = seen.delivered;
    gate = undefined;
    opener?.();
  };
  return {
    seen,
    open,
    onEvent: () => {
      if (++seen.delivered !== at) return;
      gate = new Promise((resolve) => (opener = resolve));
      if (forMs !== undefined) setTimeout(open, forMs);
    },
    outputPace: () => {
      if (gate) seen.asked++;
      return gate;
    },
  };
}

describe('worker-pool: ExecuteOptions.outputPace (a queue worker whose caller is behind)', () => {
  const backends = useBackends();

  it('the thread waits while the pace is pending (held at its next message), then goes on: every event arrives', async () => {
    const backend = backends.make({ maxThreads: 1 });
    const n = 20_000;
    const gate = gateAt(100, 1500);
    const result = await backend.execute({ pluginId: HOSTILE, handlerId: 'event-flood', input: { n, kb: 1 } }, { timeoutMs: 30_000, onEvent: gate.onEvent, outputPace: gate.outputPace });
    expectOk(result);
    expect(gate.seen.delivered).toBe(n);
    // Held at its next message once the gate closed (what it had posted meanwhile still came), far from the end.
    expect(gate.seen.whenOpened).toBeGreaterThanOrEqual(100);
    expect(gate.seen.whenOpened).toBeLessThan(100 + 4096);
  });

  it('a pace that gives a thenable whose then() throws is the host\'s mistake, not the thread\'s: the execution goes on, every event arrives', async () => {
    const backend = backends.make({ maxThreads: 1 });
    const n = 2000;
    let delivered = 0;
    const outputPace = () => ({ then: () => { throw new Error('the pace broke'); } }) as unknown as Promise<void>;
    const result = await backend.execute({ pluginId: HOSTILE, handlerId: 'event-flood', input: { n, kb: 1 } }, { timeoutMs: 30_000, onEvent: () => void delivered++, outputPace });
    expectOk(result);
    expect(delivered).toBe(n);
  });

  it('an execution that ends while the pace is still pending leaves its thread the whole window for the next one', async () => {
    const backend = backends.make({ maxThreads: 1 });
    // Paced at its last event: it sends nothing more, and answers (an answer is never held).
    const stuck = gateAt(3000);
    const first = await backend.execute({ pluginId: HOSTILE, handlerId: 'event-flood', input: { n: 3000, kb: 1 } }, { onEvent: stuck.onEvent, outputPace: stuck.outputPace });
    expectOk(first);
    expect(stuck.seen.delivered).toBe(3000);
    let delivered = 0;
    const second = await backend.execute({ pluginId: HOSTILE, handlerId: 'event-flood', input: { n: 8000, kb: 1 } }, { timeoutMs: 10_000, onEvent: () => void delivered++ });
    expectOk(second);
    expect(second.meta.workerId).toBe(first.meta.workerId);
    expect(delivered).toBe(8000);
  });

  it('one wait at a time: while the pace is pending, the messages the thread had already sent do not ask outputPace again', async () => {
    const backend = backends.make({ maxThreads: 1 });
    const gate = gateAt(100, 500);
    const result = await backend.execute({ pluginId: HOSTILE, handlerId: 'event-flood', input: { n: 5000, kb: 1 } }, { timeoutMs: 30_000, onEvent: gate.onEvent, outputPace: gate.outputPace });
    expectOk(result);
    expect(gate.seen.delivered).toBe(5000);
    expect(gate.seen.asked).toBe(1);
  });

  it("the wait of an execution that ended, settling later, does not end the next execution's wait on that thread", async () => {
    const backend = backends.make({ maxThreads: 1 });
    const stale = gateAt(3000);
    const first = await backend.execute({ pluginId: HOSTILE, handlerId: 'event-flood', input: { n: 3000, kb: 1 } }, { onEvent: stale.onEvent, outputPace: stale.outputPace });
    expectOk(first);
    const gate = gateAt(100, 1000);
    const onEvent = () => {
      gate.onEvent();
      // The first execution's pace settles while the second's is pending.
      if (gate.seen.delivered === 100) setTimeout(stale.open, 300);
    };
    const second = await backend.execute({ pluginId: HOSTILE, handlerId: 'event-flood', input: { n: 5000, kb: 1 } }, { timeoutMs: 30_000, onEvent, outputPace: gate.outputPace });
    expectOk(second);
    expect(second.meta.workerId).toBe(first.meta.workerId);
    expect(gate.seen.delivered).toBe(5000);
    // Released only when its own pace settled: asked once, not again on a message sent after the stale one let the thread go.
    expect(gate.seen.asked).toBe(1);
  });

  it('an event of thousands of separate strings weighs what it holds: while the host is busy, only a window of them (16 MB, and the message that crosses it) is sent ahead', async () => {
    const backend = backends.make({ maxThreads: 1 });
    let busyUntil = 0;
    const sentWhileBusy: number[] = [];
    const onEvent = (event: { event: unknown }) => {
      const { i, sentAt } = event.event as { i: number; sentAt: number };
      // The host's event loop is busy for 1 s at the first event.
      if (i === 0) busyUntil = holdEventLoop(1000);
      else if (sentAt < busyUntil - 100) sentWhileBusy.push(i);
    };
    // 40 events of 4000 1 KB strings: 4 MB (8 MB as two-byte text) each.
    const result = await backend.execute({ pluginId: POOL, handlerId: 'wide-events', input: { n: 40, keys: 4000 } }, { timeoutMs: 60_000, onEvent });
    expectOk(result);
    expect(sentWhileBusy.length, `events sent while the host was busy: ${sentWhileBusy.join(', ')}`).toBeLessThanOrEqual(4);
  });

  it.each(['map', 'set', 'error', 'array-buffer', 'view', 'getter', 'bigint', 'patched-view', 'patched-array-buffer'])(
    'an event whose 4 MB a walk of its keys would not see (%s) weighs what crosses: while the host is busy, only a window of them is sent ahead',
    async (as) => {
      const backend = backends.make({ maxThreads: 1 });
      let busyUntil = 0;
      const sentWhileBusy: number[] = [];
      let bytes = 0;
      const onEvent = ({ event }: { event: unknown }) => {
        const e = event instanceof Map ? Object.fromEntries(event) : (event as { i: number; sentAt: number; v: unknown });
        const v = e.v as { byteLength?: number; length?: number; message?: string; size?: number } | string | bigint;
        if (typeof v === 'bigint') bytes += v > 1n << 1024n ? 4 * 1024 * 1024 : 0;
        else bytes += typeof v === 'string' ? v.length : (v.byteLength ?? v.message?.length ?? (v instanceof Set ? [...v][0].length : 0));
        if (e.i === 0) busyUntil = holdEventLoop(1000);
        else if (e.sentAt < busyUntil - 100) sentWhileBusy.push(e.i);
      };
      const result = await backend.execute({ pluginId: POOL, handlerId: 'hidden-weight-events', input: { n: 24, as } }, { timeoutMs: 60_000, onEvent });
      expectOk(result);
      // What arrives is what was weighed: the getter read once ('' at its first read), the view's own byte.
      expect(bytes).toBe(as === 'getter' ? 0 : as === 'view' || as === 'patched-view' ? 24 : 24 * 4 * 1024 * 1024);
      // 16 MB of window: four 4 MB events, and the one that crosses it (a view's whole buffer crosses, and counts).
      expect(sentWhileBusy.length, `events sent while the host was busy: ${sentWhileBusy.join(', ')}`).toBeLessThanOrEqual(as === 'getter' ? 23 : 5);
    },
  );

  it.each([
    ['key', 5],
    ['regexp', 5],
    ['negative-bigint', 5],
  ] as const)('an event weighed by more than its values\' text (%s) weighs what crosses: while the host is busy, only a window of them is sent ahead', async (as, most) => {
    const backend = backends.make({ maxThreads: 1 });
    let busyUntil = 0;
    const sentWhileBusy: number[] = [];
    const onEvent = ({ event }: { event: unknown }) => {
      const { i, sentAt } = event as { i: number; sentAt: number };
      if (i === 0) busyUntil = holdEventLoop(1000);
      else if (sentAt < busyUntil - 100) sentWhileBusy.push(i);
    };
    const result = await backend.execute({ pluginId: POOL, handlerId: 'hidden-weight-events', input: { n: 24, as } }, { timeoutMs: 60_000, onEvent });
    expect(okData(result)).toBe(24);
    // Before (weighed as one unit): all 23 after the first were sent while the host was busy.
    expect(sentWhileBusy.length, `events sent while the host was busy: ${sentWhileBusy.join(', ')}`).toBeLessThanOrEqual(most);
  });

  it('an event of a thousand views over one 8 MB buffer weighs the buffer once, as it crosses once: it arrives (it weighed past any message, and was taken for a forged one)', async () => {
    const backend = backends.make({ maxThreads: 1 });
    const events: unknown[] = [];
    const result = await backend.execute({ pluginId: POOL, handlerId: 'emits-views', input: { n: 1000 } }, { onEvent: ({ event }) => void events.push(event) });
    expect(okData(result)).toBe(1000);
    expect(events).toHaveLength(1);
    expect((events[0] as { chunks: Uint8Array[] }).chunks).toHaveLength(1000);
  });
});


describe('worker-pool: an abort while the pace is pending', () => {
  const backends = useBackends();

  it('the handler sees ctx.signal and answers within its grace, though its caller is still behind: its output is no one\'s now, and the thread is kept', async () => {
    const backend = backends.make({ maxThreads: 1, cancelGraceMs: 5000 });
    const controller = new AbortController();
    // Behind from the handler's first event on, never caught up: the thread is held at its next message.
    let behind: Promise<void> | undefined;
    const onEvent = () => {
      behind = new Promise(() => {});
      // After the thread was held (the pace is asked once the event was delivered).
      setTimeout(() => controller.abort(), 100);
    };
    // respects-signal logs a line as the signal fires, before it writes its file and resolves.
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'respects-signal' }, { signal: controller.signal, timeoutMs: 20_000, onEvent, outputPace: () => behind });
    expectError(result, 'ABORTED');
    expect(result.meta.artifacts).toEqual(['signal-ABORTED.txt']);
    const next = await backend.execute({ pluginId: BASIC, handlerId: 'echo' });
    expect(next.meta.workerId).toBe(result.meta.workerId);
    expect((await runners(backend)).terminated).toBe(0);
  });
});

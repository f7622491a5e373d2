import { describe, expect, it } from 'vitest';
import { HOSTILE, expectOk, useBackends } from './helpers.js';

/** A gate for ExecuteOptions.outputPace: closed at the `at`-th event, opened `forMs` later (never, if undefined). */
function gateAt(at: number, forMs?: number) {
  const seen = { delivered: 0, whenOpened: -1 };
  let gate: Promise<void> | undefined;
  return {
    seen,
    onEvent: () => {
      if (++seen.delivered !== at) return;
      let open!: () => void;
      gate = new Promise((resolve) => (open = resolve));
      if (forMs !== undefined) {
        setTimeout(() => {
          seen.whenOpened = seen.delivered;
          gate = undefined;
          open();
        }, forMs);
      }
    },
    outputPace: () => gate,
  };
}

describe('worker-pool: ExecuteOptions.outputPace (a queue worker whose caller is behind)', () => {
  const backends = useBackends();

  it('the thread waits while the pace is pending (its window full), then goes on: every event arrives', async () => {
    const backend = backends.make({ maxThreads: 1 });
    const n = 20_000;
    const gate = gateAt(100, 1500);
    const result = await backend.execute({ pluginId: HOSTILE, handlerId: 'event-flood', input: { n, kb: 1 } }, { timeoutMs: 30_000, onEvent: gate.onEvent, outputPace: gate.outputPace });
    expectOk(result);
    expect(gate.seen.delivered).toBe(n);
    // Held at its window (4096 small messages) past the gate, far from the end.
    expect(gate.seen.whenOpened).toBeGreaterThan(100);
    expect(gate.seen.whenOpened).toBeLessThan(100 + 4096 + 64);
  });

  it('an execution that ends while the pace is still pending leaves its thread the whole window for the next one', async () => {
    const backend = backends.make({ maxThreads: 1 });
    const stuck = gateAt(10);
    const first = await backend.execute({ pluginId: HOSTILE, handlerId: 'event-flood', input: { n: 3000, kb: 1 } }, { onEvent: stuck.onEvent, outputPace: stuck.outputPace });
    expectOk(first);
    expect(stuck.seen.delivered).toBe(3000);
    let delivered = 0;
    const second = await backend.execute({ pluginId: HOSTILE, handlerId: 'event-flood', input: { n: 8000, kb: 1 } }, { timeoutMs: 10_000, onEvent: () => void delivered++ });
    expectOk(second);
    expect(second.meta.workerId).toBe(first.meta.workerId);
    expect(delivered).toBe(8000);
  });
});

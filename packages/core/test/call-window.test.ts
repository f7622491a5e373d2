import { describe, expect, it } from 'vitest';
import { CALLS_IN_FLIGHT, CallWindow, RunnerSession, type RunnerTask, type RunnerToHost } from '../src/backend-kit.js';

describe('CallWindow', () => {
  it(`sends ${CALLS_IN_FLIGHT} at once and each further call when one is answered, first in first out`, () => {
    const window = new CallWindow();
    const sent: number[] = [];
    for (let i = 0; i < CALLS_IN_FLIGHT + 3; i++) window.enter(() => sent.push(i));
    expect(sent).toHaveLength(CALLS_IN_FLIGHT);
    window.leave();
    expect(sent.at(-1)).toBe(CALLS_IN_FLIGHT);
    window.leave();
    window.leave();
    expect(sent).toEqual(Array.from({ length: CALLS_IN_FLIGHT + 3 }, (_, i) => i));
  });

  it('drains a long run of sends that fail at once (and leave) without growing the stack', () => {
    const window = new CallWindow();
    let sent = 0;
    for (let i = 0; i < CALLS_IN_FLIGHT; i++) window.enter(() => sent++);
    const failing = () => {
      sent++;
      window.leave();
    };
    for (let i = 0; i < 200_000; i++) window.enter(failing);
    expect(sent).toBe(CALLS_IN_FLIGHT);
    window.leave();
    expect(sent).toBe(CALLS_IN_FLIGHT + 200_000);
  });

  it('allSent() settles once the calls that waited are sent, as earlier ones are answered', async () => {
    const window = new CallWindow();
    for (let i = 0; i < CALLS_IN_FLIGHT + 2; i++) window.enter(() => undefined);
    let allSent = false;
    void window.allSent().then(() => (allSent = true));
    window.leave();
    await Promise.resolve();
    expect(allSent).toBe(false);
    window.leave();
    await Promise.resolve();
    expect(allSent).toBe(true);
  });

  it(`flush() counts what it sent as in flight: once those are answered, ${CALLS_IN_FLIGHT} are sent at once again, not more`, () => {
    const window = new CallWindow();
    for (let i = 0; i < CALLS_IN_FLIGHT + 10; i++) window.enter(() => undefined);
    window.flush();
    for (let i = 0; i < CALLS_IN_FLIGHT + 10; i++) window.leave();
    let sent = 0;
    for (let i = 0; i < CALLS_IN_FLIGHT + 10; i++) window.enter(() => sent++);
    expect(sent).toBe(CALLS_IN_FLIGHT);
  });

  it('allSent() settles once nothing waits; flush() sends what waits whatever the bound; clear() forgets it', async () => {
    const window = new CallWindow();
    await window.allSent();
    let sent = 0;
    for (let i = 0; i < CALLS_IN_FLIGHT + 10; i++) window.enter(() => sent++);
    let allSent = false;
    void window.allSent().then(() => (allSent = true));
    await Promise.resolve();
    expect(allSent).toBe(false);
    window.flush();
    expect(sent).toBe(CALLS_IN_FLIGHT + 10);
    await Promise.resolve();
    expect(allSent).toBe(true);

    const other = new CallWindow();
    let otherSent = 0;
    for (let i = 0; i < CALLS_IN_FLIGHT + 10; i++) other.enter(() => otherSent++);
    other.clear();
    for (let i = 0; i < 10; i++) other.leave();
    expect(otherSent).toBe(CALLS_IN_FLIGHT);
  });
});

describe('RunnerSession platform calls past the bound', () => {
  it('rejects ten thousand calls whose arguments cannot be sent, each naming the call', async () => {
    const sent: RunnerToHost[] = [];
    const session = new RunnerSession({} as RunnerTask, (message) => {
      if (message.type === 'rpc') structuredClone(message.args);
      sent.push(message);
    });
    const calls = Array.from({ length: 10_000 }, () => (session.platform.kv as Record<string, (...args: unknown[]) => Promise<unknown>>).get!(() => 'not sendable'));
    const settled = await Promise.allSettled(calls);
    expect(settled.every((s) => s.status === 'rejected' && /platform\.kv\.get arguments/.test(String((s.reason as Error).message)))).toBe(true);
    expect(sent).toEqual([]);
  });

  it('holds calls past the bound until the host answers, then sends them in order', () => {
    const sent: Array<Extract<RunnerToHost, { type: 'rpc' }>> = [];
    const session = new RunnerSession({} as RunnerTask, (message) => {
      if (message.type === 'rpc') sent.push(message);
    });
    const kv = session.platform.kv as Record<string, (...args: unknown[]) => Promise<unknown>>;
    for (let i = 0; i < CALLS_IN_FLIGHT + 2; i++) void kv.get!(i);
    expect(sent.map((m) => m.args[0])).toEqual(Array.from({ length: CALLS_IN_FLIGHT }, (_, i) => i));
    session.handle({ type: 'rpc-reply', id: sent[5]!.id, ok: true, value: 'five' });
    expect(sent.at(-1)!.args[0]).toBe(CALLS_IN_FLIGHT);
  });
});

import { describe, expect, it } from 'vitest';
import { BASIC, POOL, allIdle, expectOk, runners, useBackends, waitFor } from './helpers.js';

describe('worker-pool: maxThreads across lanes', () => {
  const backends = useBackends();

  it("with another lane's thread busy, a task of another handler goes to the idle thread bound to its own (to decline and go), never to a thread started past maxThreads", async () => {
    const backend = backends.make({ maxThreads: 2, minThreads: 1, idleTimeoutMs: 60_000 });
    // Its thread (the default lane's only one) stays bound to it: a listener left on process.
    expectOk(await backend.execute({ pluginId: POOL, handlerId: 'listens-on-process', input: { event: 'worker' } }));
    await allIdle(backend);
    // The pool's other place, taken by a thread of another lane for as long as this runs.
    const long = backend.execute({ pluginId: POOL, handlerId: 'sleeps-40', input: { ms: 6000 } });
    await waitFor(async () => (await runners(backend)).busy === 1);
    const slow = backend.execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 400 } });
    await waitFor(async () => (await runners(backend)).busy === 2);
    const running = await runners(backend);
    expect(running.threads, JSON.stringify(running.lanes)).toBeLessThanOrEqual(2);
    expectOk(await slow);
    // Its thread stays for the next ones (not a thread started, and stopped, per execution).
    for (let i = 0; i < 3; i++) expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: i }));
    expect(await runners(backend)).toMatchObject({ started: 3, stopped: 0, retired: { 'globals-tampered': 1 } });
    expectOk(await long);
  });
});

describe('worker-pool: minThreads after another lane took the place', () => {
  const backends = useBackends();

  it("the default lane's thread stopped to make room for another lane's starts again once that lane's thread idles out", async () => {
    const backend = backends.make({ maxThreads: 1, minThreads: 1, idleTimeoutMs: 100 });
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }));
    // The pool is full: the default lane's idle thread goes for the 40 MB lane's.
    expectOk(await backend.execute({ pluginId: POOL, handlerId: 'sleeps-40', input: { ms: 1 } }));
    // That lane keeps no thread when idle: its thread goes after idleTimeoutMs.
    await waitFor(async () => {
      const { lanes } = await runners(backend);
      return Object.entries(lanes).every(([label, lane]) => label === 'default' || lane.threads === 0);
    });
    // Its place is free again: the default lane is back to its minimum (started as the other went).
    const { lanes } = await runners(backend);
    expect(lanes.default?.threads, JSON.stringify(lanes)).toBe(1);
  });
});

/**
 * Unmounting, on its own and as the first step of the backend's shutdown: connections closed with
 * 1001, disconnect handlers run on the live backend, what has not started dropped, the rest bounded.
 */
import { mountWebSocketChannels, type ChannelMount } from '@kb-labs/plugin-execution-channels';
import { describe, expect, it } from 'vitest';
import type { ChannelBackendFactory, useChannelHarness } from './channel-suite.js';
import { LAB, TestClient, delay, eventually, labManifest, labPlatform, labPlugin, startServer } from './helpers.js';

export function describeUnmount(setup: ReturnType<typeof useChannelHarness>, create: ChannelBackendFactory): void {
  describe('unmount', () => {
    it('closes every connection with 1001, running disconnect first, and leaves the backend serving', async () => {
      const h = await setup();
      const a = await h.connect('/echo');
      const b = await h.connect('/chat');
      const unmount = h.mount.unmount({ timeoutMs: 2000 });
      expect(await a.closed).toEqual({ code: 1001, reason: 'server shutting down' });
      expect(await b.closed).toEqual({ code: 1001, reason: 'server shutting down' });
      await unmount;
      // The echo disconnect handler ran, and was told why.
      expect(h.lab.events).toMatchObject([{ event: 'disconnect', code: 1001, cause: 'unmount' }]);
      expect(h.mount.unmounted).toBe(true);
      expect(h.server.listenerCount('upgrade')).toBe(0);
      expect(h.mount.stats().connections).toBe(0);
      const result = await h.backend.execute({ pluginId: LAB, handlerId: 'echo', input: { event: 'message', data: 'still here' } });
      expect(result).toMatchObject({ ok: true, data: { echo: 'still here' } });
    });

    it('is idempotent: a second unmount() (a shorter timeoutMs, say) is the first one, and stops nothing that one lets finish', async () => {
      const h = await setup();
      const client = await h.connect('/slow');
      client.send({ id: 1, data: { gate: 'held-through', n: 1 } });
      await eventually(() => h.lab.entered.includes(1), 'message 1 started');
      const first = h.mount.unmount({ timeoutMs: 5000 });
      const second = h.mount.unmount({ timeoutMs: 50 });
      expect(second).toBe(first);
      expect(await client.closed).toEqual({ code: 1001, reason: 'server shutting down' });
      // Past the second call's 50 ms: the running message and the disconnect after it are still the first's to bound.
      await delay(300);
      h.lab.open('held-through');
      await first;
      expect(h.lab.events).toMatchObject([{ event: 'disconnect', cause: 'unmount' }]);
    });

    it("a client that left before the unmount (its message still running) is not said to have been closed by it: its disconnect has no cause", async () => {
      const h = await setup();
      const client = await h.connect('/slow');
      client.send({ id: 1, data: { gate: 'left-first', n: 1 } });
      await eventually(() => h.lab.entered.includes(1), 'message 1 started');
      client.close(4001, 'bye');
      await client.closed;
      await delay(100);
      const unmount = h.mount.unmount({ timeoutMs: 2000 });
      h.lab.open('left-first');
      await unmount;
      expect(h.lab.events).toMatchObject([{ event: 'disconnect', cause: null }]);
    });

    it('is disposed before the backend it was mounted after under await using', async () => {
      const lab = labPlatform();
      const { server, url, close } = await startServer();
      let client: TestClient;
      let mount: ChannelMount;
      {
        await using backend = create({ plugins: [labPlugin], workspace: false, platform: lab.platform, permissions: { platform: { events: true, gate: true } } });
        await using mounted = mountWebSocketChannels(server, labManifest as never, { backend, heartbeatIntervalMs: 0 });
        mount = mounted;
        client = await TestClient.connect(url('/echo'));
      }
      expect(await client.closed).toEqual({ code: 1001, reason: 'server shutting down' });
      // Disposed in reverse order: the disconnect handler ran while the backend was still up.
      expect(lab.events).toMatchObject([{ event: 'disconnect', code: 1001, cause: 'unmount' }]);
      expect(mount.unmounted).toBe(true);
      expect(server.listenerCount('upgrade')).toBe(0);
      await close();
    });

    it('is unmounted by the backend\'s shutdown, before the backend stops: disconnect handlers still run', async () => {
      const errors: unknown[] = [];
      const h = await setup({ onError: (error) => errors.push(error) });
      const client = await h.connect('/echo');
      await h.backend.shutdown({ timeoutMs: 2000 });
      expect(await client.closed).toEqual({ code: 1001, reason: 'server shutting down' });
      expect(h.mount.unmounted).toBe(true);
      // The disconnect handler ran on the still-serving backend: no SHUTTING_DOWN reported.
      expect(h.lab.events).toMatchObject([{ event: 'disconnect', code: 1001, cause: 'unmount' }]);
      expect(errors).toEqual([]);
      expect(h.server.listenerCount('upgrade')).toBe(0);
      expect(h.mount.stats().connections).toBe(0);
      // An unmount after that is the same finished one.
      await h.mount.unmount();
    });

    it('a backend.shutdown() called while an unmount runs waits for it: the disconnect handlers run on the live backend', async () => {
      const errors: unknown[] = [];
      const h = await setup({ onError: (error) => errors.push(error) });
      const clients = await Promise.all([1, 2, 3].map(() => h.connect('/echo')));
      await Promise.all([h.mount.unmount({ timeoutMs: 5000 }), h.backend.shutdown({ timeoutMs: 5000 })]);
      for (const client of clients) expect(await client.closed).toEqual({ code: 1001, reason: 'server shutting down' });
      expect(h.lab.events.filter((e) => (e as { event?: string }).event === 'disconnect')).toHaveLength(3);
      expect(errors).toEqual([]);
    });

    it('drops the messages that have not started (their replies could not be delivered), so that the disconnect handler has its time', async () => {
      const errors: Array<{ phase: string; code: unknown }> = [];
      const h = await setup({ onError: (error, info) => errors.push({ phase: info.phase, code: (error as { code?: unknown }).code }) });
      const client = await h.connect('/slow');
      client.send({ id: 1, data: { gate: 'g', n: 1 } });
      client.send({ id: 2, data: { gate: 'g', n: 2 } });
      await eventually(() => h.lab.entered.includes(1), 'first message started');
      const unmount = h.mount.unmount({ timeoutMs: 5000 });
      await delay(50);
      h.lab.open('g');
      await unmount;
      expect((await client.closed).code).toBe(1001);
      expect(h.lab.entered).toEqual([1]);
      expect(errors).toEqual([]);
    });

    it("drops the messages still waiting in the backend's queue: they never start, every disconnect handler runs, and shutdown takes the running message's time", async () => {
      const lab = labPlatform();
      const { server, url, close } = await startServer();
      const backend = create({ plugins: [labPlugin], workspace: false, platform: lab.platform, permissions: { platform: { events: true, gate: true } }, maxConcurrency: 1 });
      const errors: unknown[] = [];
      const mount = mountWebSocketChannels(server, labManifest as never, { backend, heartbeatIntervalMs: 0, onError: (error) => errors.push(error) });
      const clients: TestClient[] = [];
      try {
        for (let i = 0; i < 6; i++) clients.push(await TestClient.connect(url('/slow')));
        // Each message waits on a gate of its own, and only the first one's opens: a queued
        // message that started anyway would hold the shutdown until its timeoutMs.
        clients.forEach((client, n) => client.send({ id: n, data: { gate: `g${n}`, n } }));
        await eventually(() => lab.entered.includes(0), 'the first message started');
        await eventually(async () => (await backend.stats()).queued === 5, "the other five wait in the backend's queue");
        const runningMs = 1000;
        setTimeout(() => lab.open('g0'), runningMs);
        const t0 = performance.now();
        const shutdownTimeoutMs = 20_000;
        await backend.shutdown({ timeoutMs: shutdownTimeoutMs });
        const tookMs = performance.now() - t0;
        expect(mount.unmounted).toBe(true);
        expect(lab.entered).toEqual([0]);
        expect(lab.events.filter((e) => e.event === 'disconnect' && e.cause === 'unmount')).toHaveLength(6);
        // The running message finished (an abort would be reported), the dropped ones are not errors,
        // nor failed executions in the mount's counters.
        expect(errors).toEqual([]);
        // Counted: six connects, the message that ran and six disconnects; the five dropped unrun are not executions.
        expect(mount.stats()).toMatchObject({ executions: 13, failedExecutions: 0 });
        expect(tookMs).toBeGreaterThanOrEqual(runningMs - 50);
        // The running message's time (and the disconnect handlers'): not its timeoutMs, which it
        // would have waited out for a dropped message (their gates never open). Not a tighter
        // bound: on a loaded machine this took 4.5 s (a bound of 3 × runningMs failed there), and on a
        // subprocess backend (six disconnect handlers, a child each, in turn) 7.4 s with a third of a core.
        expect(tookMs).toBeLessThan(shutdownTimeoutMs);
      } finally {
        lab.openAll();
        for (const client of clients) client.terminate();
        await backend.shutdown({ timeoutMs: 2000 });
        await close();
      }
    });

    it("keeps a running message running while another caller's execution waits in the backend's queue: only what has not started is dropped", async () => {
      const lab = labPlatform();
      const { server, url, close } = await startServer();
      const backend = create({ plugins: [labPlugin], workspace: false, platform: lab.platform, permissions: { platform: { events: true, gate: true } }, maxConcurrency: 1 });
      const errors: unknown[] = [];
      const mount = mountWebSocketChannels(server, labManifest as never, { backend, heartbeatIntervalMs: 0, onError: (error) => errors.push(error) });
      const client = await TestClient.connect(url('/slow'));
      try {
        client.send({ id: 0, data: { gate: 'g0', n: 0 } });
        await eventually(() => lab.entered.includes(0), 'the message started');
        // Another caller of the same backend: it waits behind the running message.
        const other = backend.execute({ pluginId: LAB, handlerId: 'slow', input: { event: 'message', data: { gate: 'g1', n: 1 } } });
        await eventually(async () => (await backend.stats()).queued === 1, "the other caller's execution waits in the backend's queue");
        setTimeout(() => {
          lab.open('g0');
          lab.open('g1');
        }, 500);
        await mount.unmount({ timeoutMs: 8000 });
        // The running message finished (aborted, it would be reported), and the other caller's ran.
        expect(errors).toEqual([]);
        expect(lab.entered).toEqual([0, 1]);
        expect((await other).ok).toBe(true);
      } finally {
        lab.openAll();
        client.terminate();
        await backend.shutdown({ timeoutMs: 2000 });
        await close();
      }
    });

    it('with abortOnClose, still gives a running message its timeoutMs (the server closed the connection: no client left)', async () => {
      const lab = labPlatform();
      const { server, url, close } = await startServer();
      const backend = create({ plugins: [labPlugin], workspace: false, platform: lab.platform, permissions: { platform: { events: true, gate: true } } });
      const errors: unknown[] = [];
      const mount = mountWebSocketChannels(server, labManifest as never, { backend, heartbeatIntervalMs: 0, abortOnClose: true, onError: (error) => errors.push(error) });
      const client = await TestClient.connect(url('/slow'));
      try {
        client.send({ id: 0, data: { gate: 'g0', n: 0 } });
        await eventually(() => lab.entered.includes(0), 'the message started');
        setTimeout(() => lab.open('g0'), 500);
        const t0 = performance.now();
        await mount.unmount({ timeoutMs: 8000 });
        // It finished (aborted, it would be reported), after its gate opened.
        expect(errors).toEqual([]);
        expect(performance.now() - t0).toBeGreaterThanOrEqual(450);
        expect(lab.events.filter((e) => e.event === 'disconnect' && e.cause === 'unmount')).toHaveLength(1);
      } finally {
        lab.openAll();
        client.terminate();
        await backend.shutdown({ timeoutMs: 2000 });
        await close();
      }
    });

    it('runs every disconnect handler when many clients go at once, though the backend queue is smaller than their number', async () => {
      const lab = labPlatform();
      const { server, url, close } = await startServer();
      const backend = create({ plugins: [labPlugin], workspace: false, platform: lab.platform, permissions: { platform: { events: true, gate: true } }, maxConcurrency: 1, maxQueue: 2 });
      const errors: unknown[] = [];
      const mount = mountWebSocketChannels(server, labManifest as never, { backend, heartbeatIntervalMs: 0, onError: (error) => errors.push(error) });
      const clients: TestClient[] = [];
      for (let i = 0; i < 12; i++) clients.push(await TestClient.connect(url('/echo')));
      // Twelve disconnect handlers one after the other: on a subprocess backend twelve children
      // started in turn, 2.6 s here beside another test run, past 10 s with a third of a core.
      await mount.unmount({ timeoutMs: 60_000 });
      expect(lab.events.filter((e) => e.event === 'disconnect')).toHaveLength(12);
      expect(errors).toEqual([]);
      await backend.shutdown({ timeoutMs: 2000 });
      await close();
    }, 90_000);

    it("the backend's shutdown gives the unmount its own timeoutMs, not unmount's default", async () => {
      const errors: Array<{ phase: string; code: unknown }> = [];
      const h = await setup({ onError: (error, info) => errors.push({ phase: info.phase, code: (error as { code?: unknown }).code }) });
      const client = await h.connect('/slow');
      client.send({ id: 1, data: { gate: 'never', n: 1 } });
      await eventually(() => h.lab.entered.includes(1), 'message started');
      const t0 = performance.now();
      await h.backend.shutdown({ timeoutMs: 200 });
      // Unmount's own default is 5 s: the message was stopped at the shutdown's 200 ms, by the
      // unmount (ABORTED) or by the backend's own deadline, which falls at the same moment
      // (SHUTTING_DOWN): whichever timer fires first.
      expect(performance.now() - t0).toBeLessThan(3000);
      expect((await client.closed).code).toBe(1001);
      expect(errors.filter((e) => e.phase === 'message')).toEqual([{ phase: 'message', code: expect.stringMatching(/^(ABORTED|SHUTTING_DOWN)$/) }]);
    });

    // With abortOnClose too: the server closed the connection, no client left, so the abort is reported.
    it.each([false, true])('aborts executions still running when unmount runs out of time, and reports them (abortOnClose: %s)', async (abortOnClose) => {
      const errors: Array<{ phase: string; code: unknown }> = [];
      const h = await setup({ abortOnClose, onError: (error, info) => errors.push({ phase: info.phase, code: (error as { code?: unknown }).code }) });
      const client = await h.connect('/slow');
      client.send({ id: 1, data: { gate: 'never', n: 1 } });
      await eventually(() => h.lab.entered.includes(1), 'message started');
      await h.mount.unmount({ timeoutMs: 200 });
      expect((await client.closed).code).toBe(1001);
      expect(errors).toContainEqual({ phase: 'message', code: 'ABORTED' });
      expect(h.mount.stats().connections).toBe(0);
    });
  });
}

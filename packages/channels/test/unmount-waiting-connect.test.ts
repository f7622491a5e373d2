/**
 * An unmount drops what has not started of the connections it closes: a connect still waiting in
 * the backend's queue as well as messages. Run after the unmount closed its connection, it could
 * send no ready frame and would be followed by a disconnect, while the disconnect handlers of
 * accepted connections waited behind both for the backend's slots.
 */
import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';
import { describe, expect, it } from 'vitest';
import { useChannelHarness } from './channel-suite.js';
import { eventually } from './helpers.js';

// One slot, so that what runs next is what waited longest in the backend's queue.
const setup = useChannelHarness((options) => new InProcessBackend({ ...options, maxConcurrency: 1, maxQueue: 10 }));

describe('an unmount while a connect waits in the backend\'s queue', () => {
  it('drops that connect unrun: the disconnect handler of an accepted connection queued behind it still runs', async () => {
    const h = await setup();
    const accepted = await h.connect('/slow');
    accepted.send({ id: 1, data: { gate: 'message', n: 'message' } });
    await eventually(() => h.lab.entered.includes('message'), 'the message holds the only slot');
    // Its connect handler, once it runs, holds the slot until the gate 'connect' opens (never).
    const waiting = await h.connect('/deny?mode=held', { ready: false });
    await eventually(() => h.backend.stats().then((s) => s.queued === 1), 'the connect waits in the backend\'s queue');
    const unmount = h.mount.unmount({ timeoutMs: 1500 });
    expect((await waiting.closed).code).toBe(1001);
    expect((await accepted.closed).code).toBe(1001);
    h.lab.open('message');
    await unmount;
    // Before: the connect of the closed connection ran when the message gave its slot back, and
    // held it until the unmount's timeoutMs, which then dropped the disconnect handler behind it.
    expect(h.lab.entered).not.toContain('connect');
    expect(h.lab.events).toMatchObject([{ event: 'disconnect', cause: 'unmount' }]);
    // Neither run nor failed: as a message dropped unrun, it is no execution in the counters.
    expect(h.mount.stats()).toMatchObject({ executions: 3, failedExecutions: 0 });
  });
});

/**
 * A connect handler still running when an unmount runs out of time is aborted, as a running
 * message is: that is a failed execution of the server's (stats().failedExecutions counts it) and
 * onError is told of it, as of the message. Only an abort for a client that left (abortOnClose)
 * is no failure to report.
 */
import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';
import { describe, expect, it } from 'vitest';
import { useChannelHarness } from './channel-suite.js';
import { eventually } from './helpers.js';

const setup = useChannelHarness((options) => new InProcessBackend(options));

describe('an unmount that runs out of time while a connect handler runs', () => {
  it.each([false, true])('reports the connect it aborted, as it reports a message (abortOnClose: %s)', async (abortOnClose) => {
    const errors: Array<{ phase: string; code: unknown }> = [];
    const h = await setup({ abortOnClose, onError: (error, info) => errors.push({ phase: info.phase, code: (error as { code?: unknown }).code }) });
    // Its connect handler holds until the gate 'connect' opens (never, here).
    const waiting = await h.connect('/deny?mode=held', { ready: false });
    await eventually(() => h.lab.entered.includes('connect'), 'the connect handler runs');
    await h.mount.unmount({ timeoutMs: 200 });
    expect((await waiting.closed).code).toBe(1001);
    expect(h.mount.stats()).toMatchObject({ executions: 1, failedExecutions: 1 });
    // Before: counted as failed, but onError never heard of it.
    expect(errors).toEqual([{ phase: 'connect', code: 'ABORTED' }]);
  });
});

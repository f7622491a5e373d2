/**
 * A backend whose execute() rejects, which the interface says never happens (a foreign backend, a
 * host's wrapper that throws): each failure must still end as a failed execution of its event,
 * never as an unhandled rejection or a connection whose later messages wait forever.
 */
import type { ExecutionRequest, IExecutionBackend } from '@kb-labs/plugin-execution-core';
import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';
import { describe, expect, it } from 'vitest';
import { useChannelHarness } from './channel-suite.js';
import { eventually } from './helpers.js';

/** Rejects the executions `breaks` picks, and passes the others to an in-process backend. */
function rejectingBackend(inner: IExecutionBackend, breaks: (request: ExecutionRequest) => boolean): IExecutionBackend {
  return {
    type: inner.type,
    execute: (request, options) => (breaks(request) ? Promise.reject(new Error('backend broke its promise')) : inner.execute(request, options)),
    stats: () => inner.stats(),
    health: () => inner.health(),
    shutdown: (options) => inner.shutdown(options),
    onShutdown: (listener) => inner.onShutdown(listener),
    [Symbol.asyncDispose]: () => inner.shutdown(),
  };
}

/** A message whose data is "reject", or the connect or disconnect of a connection opened with `?x=reject-<event>`. */
function breaks(request: ExecutionRequest): boolean {
  const { event, data } = request.input as { event: string; data?: unknown };
  const query = (request.context?.host as { connection?: { query?: Record<string, string> } } | undefined)?.connection?.query;
  return data === 'reject' || query?.x === `reject-${event}`;
}

const setup = useChannelHarness((options) => rejectingBackend(new InProcessBackend(options), breaks));

describe('a backend whose execute() rejects', () => {
  it('answers the message with a HANDLER_ERROR error frame, reports it, and goes on serving the connection', async () => {
    const errors: Array<{ phase: string; code: unknown }> = [];
    const h = await setup({ onError: (error, info) => errors.push({ phase: info.phase, code: (error as { code?: unknown }).code }) });
    const client = await h.connect('/echo');
    expect(await client.request('r', 'reject')).toEqual({ type: 'error', code: 'HANDLER_ERROR', message: 'backend broke its promise', replyTo: 'r' });
    // The connection was not left with a message counted as running forever.
    expect(await client.request('ok', 1)).toMatchObject({ type: 'reply', replyTo: 'ok', data: { echo: 1 } });
    expect(errors).toEqual([{ phase: 'message', code: 'HANDLER_ERROR' }]);
    expect(h.mount.stats()).toMatchObject({ failedExecutions: 1, errorFrames: 1 });
  });

  it('closes a connection whose connect rejected with 1011 HANDLER_ERROR, as any failed connect', async () => {
    const errors: Array<{ phase: string; code: unknown }> = [];
    const h = await setup({ onError: (error, info) => errors.push({ phase: info.phase, code: (error as { code?: unknown }).code }) });
    const refused = await h.connect('/echo?x=reject-connect', { ready: false });
    expect(await refused.closed).toEqual({ code: 1011, reason: 'HANDLER_ERROR' });
    expect(errors).toEqual([{ phase: 'connect', code: 'HANDLER_ERROR' }]);
    await eventually(() => h.mount.stats().connections === 0, 'the refused connection gone');
    expect(h.mount.stats().failedExecutions).toBe(1);
  });

  it('reports a rejected disconnect, and the connection is done with (an unmount does not wait on it)', async () => {
    const errors: Array<{ phase: string; code: unknown }> = [];
    const h = await setup({ onError: (error, info) => errors.push({ phase: info.phase, code: (error as { code?: unknown }).code }) });
    const client = await h.connect('/echo?x=reject-disconnect');
    await client.close();
    await eventually(() => errors.length > 0, 'the disconnect reported');
    expect(errors).toEqual([{ phase: 'disconnect', code: 'HANDLER_ERROR' }]);
    const unmounted = h.mount.unmount({ timeoutMs: 10_000 });
    // Generous: a session whose disconnect never settled would hold it the whole 10 s.
    expect(await Promise.race([unmounted.then(() => 'unmounted'), new Promise((resolve) => setTimeout(resolve, 5000, 'still waiting'))])).toBe('unmounted');
  });
});

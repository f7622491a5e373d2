/**
 * A disconnect that meets a full backend queue is tried again after a growing pause (up to ~1 s).
 * The unmount's time limit ends that: once it has aborted the disconnect, the pause it is in must
 * not hold the unmount, nor be followed by one more try.
 */
import type { ExecutionRequest, IExecutionBackend } from '@kb-labs/plugin-execution-core';
import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';
import { describe, expect, it } from 'vitest';
import { useChannelHarness } from './channel-suite.js';
import { eventually } from './helpers.js';

/** Each disconnect execution handed to the backend: its connection, and whether it came already aborted. */
const disconnects: Array<{ connectionId: string; abortedAtCall: boolean }> = [];

/** An in-process backend of one slot and no queue, whose disconnect executions are noted as they are handed to it. */
function notingBackend(inner: IExecutionBackend): IExecutionBackend {
  return {
    type: inner.type,
    execute: (request: ExecutionRequest, options) => {
      const { event, connectionId } = request.input as { event: string; connectionId: string };
      if (event === 'disconnect') disconnects.push({ connectionId, abortedAtCall: options?.signal?.aborted === true });
      return inner.execute(request, options);
    },
    stats: () => inner.stats(),
    health: () => inner.health(),
    shutdown: (options) => inner.shutdown(options),
    onShutdown: (listener) => inner.onShutdown(listener),
    [Symbol.asyncDispose]: () => inner.shutdown(),
  };
}

const setup = useChannelHarness((options) => notingBackend(new InProcessBackend({ ...options, maxConcurrency: 1, maxQueue: 0 })));

describe('a disconnect retried on a full backend queue when the unmount runs out of time', () => {
  it('is not tried again once the unmount aborted it, and is reported with the QUEUE_FULL it last met', async () => {
    disconnects.length = 0;
    const errors: Array<{ phase: string; code: unknown; connectionId: unknown }> = [];
    const h = await setup({ onError: (error, info) => errors.push({ phase: info.phase, code: (error as { code?: unknown }).code, connectionId: info.connectionId }) });
    const holder = await h.connect('/slow');
    const leaving = await h.connect('/echo');
    const { connectionId } = leaving;
    holder.send({ id: 1, data: { gate: 'never', n: 1 } });
    await eventually(() => h.lab.entered.includes(1), 'the only slot taken');
    await leaving.close();
    // Several tries, each met by the full queue: its pause has grown past the unmount's time.
    await eventually(() => disconnects.filter((d) => d.connectionId === connectionId).length >= 6, 'the disconnect tried again and again');
    await h.mount.unmount({ timeoutMs: 100 });
    const tries = disconnects.filter((d) => d.connectionId === connectionId);
    // Before: the unmount waited out the pause (up to ~1 s past its timeoutMs), then the disconnect was tried once more, already aborted.
    expect(tries.filter((d) => d.abortedAtCall)).toEqual([]);
    expect(errors.filter((e) => e.connectionId === connectionId)).toEqual([{ phase: 'disconnect', code: 'QUEUE_FULL', connectionId }]);
  });
});

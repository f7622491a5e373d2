/**
 * A channel call a handler makes as its execution is stopped (from its ctx.signal listener, which
 * in-process runs inside the stop) reaches no connection, on every backend: the execution ended.
 */
import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';
import { WorkerPoolBackend } from '@kb-labs/plugin-execution-worker-pool';
import { SubprocessBackend } from '@kb-labs/plugin-execution-subprocess';
import { describe, expect, it } from 'vitest';
import { useChannelHarness, type ChannelBackendFactory } from './channel-suite.js';
import { eventually } from './helpers.js';

const backends: Array<[string, ChannelBackendFactory]> = [
  ['in-process', (options) => new InProcessBackend(options)],
  ['worker-pool', (options) => new WorkerPoolBackend(options)],
  ['subprocess', (options) => new SubprocessBackend(options)],
];

describe.each(backends)('%s', (_name, create) => {
  const setup = useChannelHarness(create);

  it("a broadcast from a ctx.signal listener, as abortOnClose stops the execution, reaches no other connection", async () => {
    const h = await setup({ abortOnClose: true });
    const leaving = await h.connect('/parting');
    const staying = await h.connect('/parting');
    leaving.send({ id: 1, data: 'wait' });
    await eventually(() => h.lab.events.some((event) => event.event === 'listening'), 'the handler listens to its signal');
    leaving.terminate();
    await eventually(() => h.mount.stats().failedExecutions === 1, 'its execution aborted');
    // A round trip of the connection that stays: anything sent to it before is in its frames by then.
    expect((await staying.request(2, 'ping')).data).toBe('pong');
    // Before, in-process: { type: 'message', data: { parting: <id> } }, sent after the execution was stopped.
    expect(staying.frames.filter((frame) => frame.type !== 'ready' && frame.type !== 'reply')).toEqual([]);
  });
});

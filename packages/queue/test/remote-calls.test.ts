import { describe, expect, it } from 'vitest';
import { AbortedError } from '@kb-labs/plugin-execution-core';
import { RemoteCalls } from '../src/runner/remote-calls.js';

// The worker's side of a handler's ctx.platform / ctx.channel calls: what a handler is told when its
// execution ends under a call, or when it calls after the end, names the call, as on the other
// backends (docs/errors.md: ABORTED, `phase` 'rpc' and 'ended' with `service` and `method`).
describe('RemoteCalls', () => {
  it('rejects each call pending at the end with an ABORTED naming that call', async () => {
    const sent: unknown[] = [];
    const calls = new RemoteCalls((message) => sent.push(message));
    const kv = calls.call('platform', 'kv', 'get', ['k']).catch((error: unknown) => error);
    const channel = calls.call('channel', '', 'send', ['c-1', 'hi']).catch((error: unknown) => error);
    calls.close();
    expect(sent).toHaveLength(2);
    const [kvError, channelError] = await Promise.all([kv, channel]);
    expect(kvError).toBeInstanceOf(AbortedError);
    expect(kvError).toMatchObject({ message: 'The execution ended while platform.kv.get was pending', details: { phase: 'rpc', service: 'kv', method: 'get' } });
    expect(channelError).toMatchObject({ message: 'The execution ended while ctx.channel.send was pending', details: { phase: 'rpc', method: 'send' } });
    expect((channelError as AbortedError).details).not.toHaveProperty('service');
  });

  it('refuses a call made after the end, naming it, without sending it', async () => {
    const sent: unknown[] = [];
    const calls = new RemoteCalls((message) => sent.push(message));
    calls.close();
    const late = await calls.call('platform', 'kv', 'set', ['k', 1]).catch((error: unknown) => error);
    expect(late).toMatchObject({ code: 'ABORTED', message: 'platform.kv.set was called after the execution ended', details: { phase: 'ended', service: 'kv', method: 'set' } });
    const lateChannel = await calls.call('channel', '', 'close', ['c-1']).catch((error: unknown) => error);
    expect(lateChannel).toMatchObject({ code: 'ABORTED', message: 'ctx.channel.close was called after the execution ended', details: { phase: 'ended', method: 'close' } });
    expect(sent).toEqual([]);
  });
});

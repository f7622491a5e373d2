import { describe, expect, it } from 'vitest';
import { AbortedError } from '../src/errors.js';
import { callAfterEnd, callCutShort, callName } from '../src/runner/call-errors.js';

describe('ABORTED for a handler call cut short or made after the end', () => {
  it('names a call as the handler wrote it', () => {
    expect(callName('platform', 'kv', 'get')).toBe('platform.kv.get');
    expect(callName('channel', '', 'send')).toBe('ctx.channel.send');
  });

  it('after the end: phase "ended", with service and method for a platform call, method only for a channel call', () => {
    const platform = callAfterEnd('platform', 'cache', 'get');
    expect(platform).toBeInstanceOf(AbortedError);
    expect(platform.message).toBe('platform.cache.get was called after the execution ended');
    expect(platform.details).toEqual({ phase: 'ended', service: 'cache', method: 'get' });
    const channel = callAfterEnd('channel', '', 'close');
    expect(channel.message).toBe('ctx.channel.close was called after the execution ended');
    expect(channel.details).toEqual({ phase: 'ended', method: 'close' });
  });

  it('cut short: phase "rpc", said as `what` says it, or as the end of the execution', () => {
    const ended = callCutShort('channel', '', 'send');
    expect(ended.message).toBe('The execution ended while ctx.channel.send was pending');
    expect(ended.details).toEqual({ phase: 'rpc', method: 'send' });
    const stopped = callCutShort('platform', 'kv', 'set', (call) => `The execution was stopped while ${call} was pending`);
    expect(stopped.message).toBe('The execution was stopped while platform.kv.set was pending');
    expect(stopped.details).toEqual({ phase: 'rpc', service: 'kv', method: 'set' });
  });
});

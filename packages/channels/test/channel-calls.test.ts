import { ValidationError } from '@kb-labs/plugin-execution-core';
import { describe, expect, it } from 'vitest';
import { performChannelCall } from '../src/channel-calls.js';
import { ConnectionRegistry, type ChannelConnection } from '../src/connection-registry.js';

describe('performChannelCall', () => {
  // ctx.channel has only its four methods; another name arrives only from a plugin that writes to
  // its runner's transport itself. Refused before the caller or the registry is looked at.
  it('refuses a method ctx.channel does not have, naming it in details as a platform call does (reason no-such-method)', async () => {
    for (const method of ['sned', 'constructor', '__proto__']) {
      const error: unknown = await performChannelCall({} as ChannelConnection, {} as ConnectionRegistry, method, []).then(
        () => undefined,
        (reason: unknown) => reason,
      );
      expect(error, method).toBeInstanceOf(ValidationError);
      expect((error as ValidationError).message).toBe(`ctx.channel has no method "${method}"`);
      expect((error as ValidationError).details).toEqual({ method, reason: 'no-such-method' });
    }
  });

  // A broadcast leaving out every other member of a busy channel names them all; past 10,000 ids
  // the list is refused rather than read into a set on every call.
  it('takes a broadcast exclude of up to 10,000 connection ids, and refuses a longer one', async () => {
    const caller = { id: 'c-0', channel: '/chat', info: { path: '/chat' } } as ChannelConnection;
    const ids = Array.from({ length: 10_000 }, (_, i) => `c-${i}`);
    await expect(performChannelCall(caller, new ConnectionRegistry(), 'broadcast', [{ text: 'hi' }, { exclude: ids }])).resolves.toBe(0);
    await expect(performChannelCall(caller, new ConnectionRegistry(), 'broadcast', [{ text: 'hi' }, { exclude: [...ids, 'c-10000'] }])).rejects.toThrow(
      'ctx.channel.broadcast(): options.exclude must be an array of connection ids',
    );
  });

  // A queue worker's arguments come as JSON, where a left-out connection id is null.
  it('close() with a null connection id closes the caller, and answers false without closing one that is not open', async () => {
    const closes: unknown[] = [];
    const connection = (isOpen: boolean) => ({ id: 'c-1', channel: '/chat', info: { path: '/chat' }, isOpen, close: (code: number, reason: string) => closes.push([code, reason]) }) as unknown as ChannelConnection;
    await expect(performChannelCall(connection(true), new ConnectionRegistry(), 'close', [4000, 'bye', null])).resolves.toBe(true);
    expect(closes).toEqual([[4000, 'bye']]);
    await expect(performChannelCall(connection(false), new ConnectionRegistry(), 'close', [4000, 'bye'])).resolves.toBe(false);
    expect(closes).toEqual([[4000, 'bye']]);
  });
});

import { ValidationError } from '@kb-labs/plugin-execution-core';
import { describe, expect, it } from 'vitest';
import { performChannelCall } from '../src/channel-calls.js';
import type { ChannelConnection, ConnectionRegistry } from '../src/connection-registry.js';

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
});

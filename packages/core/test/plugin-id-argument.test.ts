import { describe, expect, it } from 'vitest';
import { ValidationError } from '../src/errors.js';
import { checkPluginIdArgument } from '../src/host/plugin-id-argument.js';

/** The message checkPluginIdArgument() refuses `value` with, or undefined when it takes it. */
function refusal(value: unknown, action: 'reload' | 'unregister' = 'unregister'): string | undefined {
  try {
    checkPluginIdArgument(value, action);
    return undefined;
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError);
    expect(error).toMatchObject({ code: 'VALIDATION_ERROR', details: { path: 'pluginId' } });
    return (error as Error).message;
  }
}

describe('checkPluginIdArgument()', () => {
  it('takes any non-empty string, even one of a single character or only spaces', () => {
    for (const id of ['@acme/x', 'x', ' ']) expect(refusal(id)).toBeUndefined();
  });

  it('names the call and what was given instead, by kind, without calling the value', () => {
    const revoked = Proxy.revocable({}, {});
    revoked.revoke();
    const given: Array<[unknown, string]> = [
      ['', 'an empty string'],
      [null, 'null'],
      [undefined, 'undefined'],
      [0, 'a number (0)'],
      [12n, 'a bigint (12)'],
      [false, 'a boolean (false)'],
      [Symbol('id'), 'symbol'],
      [() => 'id', 'function'],
      [{ id: 'x' }, 'an object'],
      [['x'], 'an object (Array)'],
      [new String('x'), 'an object (String)'],
      [{ [Symbol.toStringTag]: 'Plugin', toString: () => 'x' }, 'an object (Plugin)'],
      [revoked.proxy, 'an object'],
    ];
    for (const [value, says] of given) expect(refusal(value)).toBe(`unregisterPlugin() needs the id of a registered plugin (its manifest's "id"), got ${says}`);
    expect(refusal(7, 'reload')).toBe(`reloadPlugin() needs the id of a registered plugin (its manifest's "id"), got a number (7)`);
  });
});

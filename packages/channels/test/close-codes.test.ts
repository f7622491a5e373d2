// The close codes and reasons plugin code may choose (docs/channels.md, Close codes), checked at their bounds.
import { ValidationError } from '@kb-labs/plugin-execution-core';
import { describe, expect, it } from 'vitest';
import { closeCodeForConnectFailure, closeCodeForProtocolError, readCloseArguments, readDenial } from '../src/close-codes.js';

describe('readDenial (a connect handler\'s { accept: false, code?, reason? })', () => {
  it('keeps a code of 4000-4999 and closes with 1008 for any other, the 3000s and 1000 included', () => {
    expect(readDenial({ accept: false, code: 4000 })?.code).toBe(4000);
    expect(readDenial({ accept: false, code: 4999 })?.code).toBe(4999);
    for (const code of [3000, 3999, 5000, 1000, 1011, 4000.5, '4001', undefined]) {
      expect(readDenial({ accept: false, code })?.code, String(code)).toBe(1008);
    }
  });

  it('cuts a reason longer than a close frame takes to 123 bytes, never halving a character', () => {
    expect(readDenial({ accept: false })).toEqual({ code: 1008, reason: 'connection refused' });
    expect(readDenial({ accept: false, reason: 'x'.repeat(123) })?.reason).toBe('x'.repeat(123));
    expect(readDenial({ accept: false, reason: 'x'.repeat(124) })?.reason).toBe('x'.repeat(123));
    // 'x' then emoji of 4 bytes (two UTF-16 units): 1 + 30 × 4 = 121 bytes fit, the 31st would not.
    const reason = readDenial({ accept: false, reason: `x${'😀'.repeat(40)}` })!.reason;
    expect(reason).toBe(`x${'😀'.repeat(30)}`);
    expect(Buffer.byteLength(reason)).toBeLessThanOrEqual(123);
    // 4 + 29 × 4 = 120 bytes, and a lone half of the 30th (3 bytes as U+FFFD) would fit too: it is dropped.
    expect(readDenial({ accept: false, reason: `xxxx${'😀'.repeat(40)}` })!.reason).toBe(`xxxx${'😀'.repeat(29)}`);
  });
});

describe('readCloseArguments (ctx.channel.close(), registry.close())', () => {
  it('takes 1000, 1001, 1008, 1011 and 3000-4999, and refuses the others naming the call', () => {
    for (const code of [1000, 1001, 1008, 1011, 3000, 4999]) expect(readCloseArguments('c()', code, 'r')).toEqual({ code, reason: 'r' });
    for (const code of [999, 1002, 1005, 1006, 1013, 2999, 5000, 3000.5, '1000']) {
      expect(() => readCloseArguments('c()', code, ''), String(code)).toThrow(ValidationError);
      expect(() => readCloseArguments('c()', code, ''), String(code)).toThrow(/^c\(\): code must be 1000, 1001, 1008, 1011 or 3000-4999/);
    }
  });

  it('takes a reason of up to 123 bytes of UTF-8, counted in bytes, not characters', () => {
    expect(readCloseArguments('c()', undefined, undefined)).toEqual({ code: 1000, reason: '' });
    expect(readCloseArguments('c()', 1000, '€'.repeat(41)).reason).toBe('€'.repeat(41)); // 123 bytes
    expect(() => readCloseArguments('c()', 1000, '€'.repeat(42))).toThrow(/reason must be a string of at most 123 bytes/); // 42 characters, 126 bytes
    expect(() => readCloseArguments('c()', 1000, 7)).toThrow(ValidationError);
  });
});

describe('the close codes the server chooses', () => {
  it('closes a failed connect with 1008 (PERMISSION_DENIED), 1013 (QUEUE_FULL), 1001 (SHUTTING_DOWN), else 1011', () => {
    expect(['PERMISSION_DENIED', 'QUEUE_FULL', 'SHUTTING_DOWN', 'HANDLER_ERROR', 'TIMEOUT'].map(closeCodeForConnectFailure)).toEqual([1008, 1013, 1001, 1011, 1011]);
  });

  it("names the code ws closed with for each kind of protocol violation, and none for an error that is not one", () => {
    const codes = ['WS_ERR_UNSUPPORTED_MESSAGE_LENGTH', 'WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH', 'WS_ERR_INVALID_UTF8', 'WS_ERR_TOO_MANY_BUFFERED_PARTS', 'WS_ERR_EXPECTED_MASK', 'WS_ERR_INVALID_OPCODE'];
    expect(codes.map((code) => closeCodeForProtocolError(Object.assign(new RangeError('x'), { code })))).toEqual([1009, 1009, 1007, 1008, 1002, 1002]);
    expect(closeCodeForProtocolError(Object.assign(new Error('reset'), { code: 'ECONNRESET' }))).toBeUndefined();
    expect(closeCodeForProtocolError(null)).toBeUndefined();
  });
});

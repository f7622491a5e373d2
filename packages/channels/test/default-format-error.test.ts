// What the default formatError lets an error frame say (docs/channels.md, formatError): the
// message of client-caused codes, cut at 1024 characters; a generic one for server-side codes.
import { ExecutionError } from '@kb-labs/plugin-execution-core';
import { describe, expect, it } from 'vitest';
import { defaultFormatError } from '../src/options.js';

describe('defaultFormatError', () => {
  it.each(['HANDLER_ERROR', 'VALIDATION_ERROR', 'PERMISSION_DENIED', 'TIMEOUT', 'QUEUE_FULL', 'ABORTED', 'SHUTTING_DOWN'])('passes the code and message of %s', (code) => {
    expect(defaultFormatError(new ExecutionError(code, 'said plainly'))).toEqual({ code, message: 'said plainly' });
  });

  it.each(['HANDLER_NOT_FOUND', 'WORKER_CRASHED', 'INTERNAL'])('keeps the code of %s and hides its message, which can name server paths', (code) => {
    expect(defaultFormatError(new ExecutionError(code, '/srv/plugins/secret/handler.mjs'))).toEqual({ code, message: 'The server could not run this channel handler' });
  });

  it('cuts a message past 1024 characters there, marked with an ellipsis, and leaves one of 1024 whole', () => {
    const whole = 'x'.repeat(1024);
    expect(defaultFormatError(new ExecutionError('HANDLER_ERROR', whole)).message).toBe(whole);
    expect(defaultFormatError(new ExecutionError('HANDLER_ERROR', `${whole}y`)).message).toBe(`${whole}…`);
  });
});

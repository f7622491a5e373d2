import { PassThrough } from 'node:stream';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { OutputCapture } from '../src/host/output-capture.js';

describe('OutputCapture', () => {
  it('delivers no line after finish(), but still keeps the tail of what the stream carries', async () => {
    const stream = new PassThrough();
    const lines: string[] = [];
    const capture = new OutputCapture(stream, { tailChars: 1000, maxLogLineLength: 1000, maxOutputPerStream: 100_000, onLine: (line) => lines.push(line) });
    stream.write('before\n');
    await nextTurn();
    capture.finish();
    stream.write('after\n');
    await nextTurn();
    expect(lines).toEqual(['before']);
    expect(capture.tail()).toBe('before\nafter\n');
  });
});

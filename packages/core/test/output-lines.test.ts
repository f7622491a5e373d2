import { OutputLines } from '@kb-labs/plugin-execution-core/backend-kit';
import { outputLimits } from '@kb-labs/plugin-execution-core/host-kit';
import { describe, expect, it } from 'vitest';

function collect(limits: { maxLineLength: number; maxChars: number }) {
  const lines: string[] = [];
  const batches: number[] = [];
  const out = new OutputLines(limits, (batch) => {
    batches.push(batch.length);
    lines.push(...batch);
  });
  return { out, lines, batches };
}

describe('OutputLines (the one output rule of every backend)', () => {
  it('splits on newlines across chunks, drops a \\r before them, and delivers a chunk\'s lines in one call', () => {
    const { out, lines, batches } = collect({ maxLineLength: 100, maxChars: 1000 });
    out.push('a\r\nb');
    out.push('c\nd\ne');
    out.finish();
    expect(lines).toEqual(['a', 'bc', 'd', 'e']);
    expect(batches).toEqual([1, 2, 1]);
  });

  it('cuts a long line once and says by how much, however many chunks it came in; a line with no newline is delivered at the end', () => {
    const { out, lines } = collect({ maxLineLength: 5, maxChars: 1000 });
    out.push(`${'x'.repeat(8)}\n`);
    out.push('yyy');
    out.push('yyyy');
    out.push('yyy\r');
    out.push('\nzz\r\nw');
    expect(lines).toEqual(['xxxxx… [3 more characters]', 'yyyyy… [5 more characters]', 'zz']);
    out.push('w'.repeat(100_000));
    out.finish();
    expect(lines.slice(3)).toEqual(['wwwww… [99996 more characters]']);
  });

  it('counts a cut line at its full length against the cap', () => {
    const { out, lines } = collect({ maxLineLength: 2, maxChars: 10 });
    out.push('abcdefghij');
    out.push('k\nlm\n');
    out.finish();
    expect(lines).toEqual(['ab… [9 more characters]', '[output truncated: 3 characters not delivered past the 10-character cap]']);
  });

  it('counts each line with its newline against the cap, drops the rest, and says so once at the end', () => {
    const { out, lines } = collect({ maxLineLength: 100, maxChars: 8 });
    out.push('abc\ndef\nghi\njk\n');
    out.finish();
    expect(lines).toEqual(['abc', 'def', '[output truncated: 7 characters not delivered past the 8-character cap]']);
  });

  it('starts afresh after finish() (a reused runner), and a throwing callback does not escape', () => {
    const out = new OutputLines({ maxLineLength: 100, maxChars: 4 }, () => {
      throw new Error('host callback failed');
    });
    expect(() => {
      out.push('abcd\nmore\n');
      out.finish();
    }).not.toThrow();
    const { out: again, lines } = collect({ maxLineLength: 100, maxChars: 4 });
    again.push('abc\nz\n');
    again.finish();
    again.push('new\n');
    expect(lines).toEqual(['abc', '[output truncated: 2 characters not delivered past the 4-character cap]', 'new']);
  });
});

describe('OutputLines, given its caps as the backend options name them', () => {
  it('takes what outputLimits.resolve() gives: the options maxLogLineLength and maxOutputPerStream, or their defaults', () => {
    const lines: string[] = [];
    const out = new OutputLines(outputLimits.resolve({ maxLogLineLength: 80, maxOutputPerStream: 200 }), (batch) => lines.push(...batch));
    out.push(`${'x'.repeat(100)}\n`);
    for (let i = 0; i < 5; i++) out.push(`${String(i).repeat(50)}\n`);
    out.finish();
    expect(lines).toEqual([`${'x'.repeat(80)}… [20 more characters]`, '0'.repeat(50), '1'.repeat(50), '[output truncated: 153 characters not delivered past the 200-character cap]']);
    const byDefault: string[] = [];
    const plain = new OutputLines(outputLimits.resolve({}), (batch) => byDefault.push(...batch));
    plain.push(`${'y'.repeat(20_000)}\n`);
    plain.finish();
    expect(byDefault).toEqual([`${'y'.repeat(16_384)}… [3616 more characters]`]);
  });
});

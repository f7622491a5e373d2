import { describe, expect, it } from 'vitest';
import { FrameDecoder, ProtocolError, encodeFrame } from '../src/framing.js';

/** `bytes` cut into pieces of the given sizes, in turn (the last piece takes what is left). */
function cut(bytes: Buffer, sizes: number[]): Buffer[] {
  const pieces: Buffer[] = [];
  for (let offset = 0, i = 0; offset < bytes.length; i++) {
    const size = sizes[i % sizes.length]!;
    pieces.push(bytes.subarray(offset, offset + size));
    offset += size;
  }
  return pieces;
}

function feed(decoder: FrameDecoder, pieces: Buffer[]): unknown[] {
  return pieces.flatMap((piece) => decoder.push(piece));
}

describe('FrameDecoder', () => {
  const large = { type: 'result', ok: true, data: 'x'.repeat(5 * 1024 * 1024 + 3) };
  const small = { type: 'log', message: 'after the large one' };

  it('keeps the frames a chunk held whole before bytes that break the stream: the error carries them', () => {
    const chunk = Buffer.concat([encodeFrame(small, 1 << 30), Buffer.from('no frame header here')]);
    const error = (() => {
      try {
        new FrameDecoder().push(chunk);
      } catch (thrown) {
        return thrown;
      }
    })();
    expect(error).toBeInstanceOf(ProtocolError);
    expect((error as ProtocolError).decoded).toEqual([small]);
  });

  it('reads a large frame that arrives in pieces, and the frames around it, whatever the cuts', () => {
    const stream = Buffer.concat([encodeFrame(small, 1 << 30), encodeFrame(large, 1 << 30), encodeFrame(small, 1 << 30)]);
    for (const sizes of [[65_536], [3, 7, 1_000_001, 1], [8, 300_000], [stream.length], [1_500_000, 5], [9, 2_000_000, 65_536, 1]]) {
      const pieces = cut(stream, sizes);
      const messages = feed(new FrameDecoder(), pieces);
      expect(messages, `pieces of ${sizes.join(', ')} bytes`).toEqual([small, large, small]);
    }
  });

  it('reads frames one after the other on the same decoder, large and small, joined or not', () => {
    const decoder = new FrameDecoder();
    for (let round = 0; round < 3; round++) {
      expect(feed(decoder, cut(encodeFrame(large, 1 << 30), [65_536]))).toEqual([large]);
      expect(feed(decoder, [encodeFrame(small, 1 << 30)])).toEqual([small]);
    }
  });

  it('takes memory for a large frame on the strength of bytes that arrived, not of its header alone', () => {
    const frame = encodeFrame({ data: 'y'.repeat(24 * 1024 * 1024) }, 1 << 30);
    const decoder = new FrameDecoder();
    const before = process.memoryUsage().arrayBuffers;
    expect(feed(decoder, [frame.subarray(0, 1024 * 1024)])).toEqual([]);
    // Its header says 24 MB: nothing near that is held for the 1 MB that came.
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(12 * 1024 * 1024);
    expect(feed(decoder, cut(frame.subarray(1024 * 1024), [65_536]))).toEqual([{ data: 'y'.repeat(24 * 1024 * 1024) }]);
  });

  it('refuses a header over its limit before any of the payload is buffered, and stays failed', () => {
    const decoder = new FrameDecoder(1024);
    expect(() => decoder.push(encodeFrame(large, 1 << 30).subarray(0, 8))).toThrow(ProtocolError);
    expect(() => decoder.push(encodeFrame(small, 1 << 30))).toThrow(/stream already failed/);
  });
});

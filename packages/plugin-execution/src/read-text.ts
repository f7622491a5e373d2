/** What `stream` holds as text (textOf); one longer than `limit` bytes (a device such as /dev/zero never ends) is refused once it is past it. */
export async function readUpTo(stream: AsyncIterable<unknown> & { destroy(): void }, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of stream) {
    bytes += (chunk as Buffer).length;
    if (bytes > limit) {
      stream.destroy();
      throw new Error(`it is larger than ${limit} bytes, the longest string Node makes`);
    }
    chunks.push(chunk as Buffer);
  }
  return textOf(Buffer.concat(chunks));
}

/**
 * `bytes` as text: UTF-8, or UTF-16 when a byte-order mark says so (Windows PowerShell's `>`,
 * Notepad's "Unicode"); a byte-order mark (files saved by Notepad or PowerShell) is not part of
 * the JSON. Bytes that are not such text (a file saved as Latin-1) are refused, where: decoded,
 * they would reach the handler as U+FFFD, silently.
 */
export function textOf(bytes: Buffer): string {
  const encoding = bytes[0] === 0xff && bytes[1] === 0xfe ? 'utf-16le' : bytes[0] === 0xfe && bytes[1] === 0xff ? 'utf-16be' : 'utf-8';
  try {
    return new TextDecoder(encoding, { fatal: true }).decode(bytes);
  } catch {
    const text = new TextDecoder(encoding).decode(bytes);
    const before = text.slice(0, Math.max(text.indexOf('\ufffd'), 0)).split('\n');
    throw new Error(`it is not ${encoding === 'utf-8' ? 'UTF-8' : 'UTF-16'} text (line ${before.length}, column ${before.at(-1)!.length + 1}): save it as UTF-8`);
  }
}

/** What `stream` holds as UTF-8 text; one longer than `limit` bytes (a device such as /dev/zero never ends) is refused once it is past it. */
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
  return Buffer.concat(chunks).toString('utf8');
}

/** A byte-order mark (files saved by Notepad or PowerShell) is not part of the JSON. */
export function stripByteOrderMark(text: string): string {
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

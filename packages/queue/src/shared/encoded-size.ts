/** Entries of an object or array looked at by encodedAtLeast. */
const ENTRIES_LOOKED_AT = 256;

/**
 * A lower bound of the bytes v8's serialiser makes of `value`, found without serialising it: the
 * characters of its strings (one byte each at least) and the bytes of its binary data, in the
 * value itself and in the first ENTRIES_LOOKED_AT entries of an object or array (one level down).
 * A body over a limit by this alone is refused without being encoded: a 100 MB string encoded
 * held a worker's event loop ~0.4 s here, on top of its decoding, long enough under load for the
 * worker to miss its heartbeats and be reported lost instead of the body refused.
 */
export function encodedAtLeast(value: unknown): number {
  const own = bytesOf(value);
  if (own > 0 || typeof value !== 'object' || value === null) return own;
  try {
    return Array.isArray(value) ? entriesOfArray(value) : entriesOfObject(value);
  } catch {
    // A getter or proxy trap that throws: encoding says what it makes of that.
    return 0;
  }
}

function entriesOfArray(value: unknown[]): number {
  let total = 0;
  for (let i = 0; i < value.length && i < ENTRIES_LOOKED_AT; i++) total += bytesOf(value[i]);
  return total;
}

function entriesOfObject(value: object): number {
  let total = 0;
  let looked = 0;
  for (const key in value) {
    if (looked++ >= ENTRIES_LOOKED_AT) break;
    if (Object.hasOwn(value, key)) total += key.length + bytesOf((value as Record<string, unknown>)[key]);
  }
  return total;
}

function bytesOf(value: unknown): number {
  if (typeof value === 'string') return value.length;
  if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) return value.byteLength;
  return 0;
}

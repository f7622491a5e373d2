/**
 * Most characters a push frame's data may take written as JSON: MAX_HELD_CALL_BYTES, the most the
 * host holds of a plugin's pending call arguments. Those are counted as they sit in memory, where
 * an object met under many keys is held once; JSON writes it at each. 100 keys each holding one
 * object of 80 strings of 60 KB (a few KB of memory) were a 480 MB frame, and building its text
 * held the host's event loop for 12 s.
 */
export { MAX_HELD_CALL_BYTES as MAX_PUSH_JSON_CHARS } from '@kb-labs/plugin-execution-core';

/** Marks, on the walk's stack, where the object below it has been walked (it leaves the path). */
const LEAVE = Symbol('leave');

/**
 * Whether `data` written as JSON would take over `limit` characters, about (a number, a boolean
 * or null as 8, a string as its length, each key and its punctuation): counted path by path, as
 * JSON writes it, and no further than the limit. A cycle is counted once (JSON refuses it after),
 * and a value whose reading throws (a getter, a Proxy) is left for JSON to refuse.
 */
export function jsonLongerThan(data: unknown, limit: number): boolean {
  let total = 0;
  const pending: unknown[] = [data];
  const onPath = new Set<object>();
  try {
    while (pending.length > 0 && total <= limit) {
      const item = pending.pop();
      if (item === LEAVE) onPath.delete(pending.pop() as object);
      else if (typeof item === 'string') total += item.length + 2;
      else if (item === null || typeof item !== 'object') total += 8;
      else if (!onPath.has(item)) total += walkInto(item, pending, onPath, limit - total);
    }
  } catch {
    return false;
  }
  return total > limit;
}

/** Put `item` on the path and its values on the stack; what it takes itself (its brackets, keys, commas). */
function walkInto(item: object, pending: unknown[], onPath: Set<object>, room: number): number {
  onPath.add(item);
  pending.push(item, LEAVE);
  if (ArrayBuffer.isView(item)) return 2 + 4 * item.byteLength;
  if (Array.isArray(item)) {
    // A slot each up front: a sparse array a billion long is over the limit before it is walked.
    if (item.length > room) return item.length;
    for (let i = 0; i < item.length; i++) pending.push(item[i]);
    return 2 + item.length;
  }
  const keys = Object.keys(item);
  let own = 2;
  for (let i = 0; i < keys.length && own <= room; i++) {
    own += keys[i]!.length + 4;
    pending.push((item as Record<string, unknown>)[keys[i]!]);
  }
  return own;
}

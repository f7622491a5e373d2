import { QueueFullError, ValidationError } from '../errors.js';
import { processShared } from './process-shared.js';
// Node's built-in by getBuiltinModule, as in wire-clone.ts: no ES facade built at start-up.
const { types } = process.getBuiltinModule('node:util');

/**
 * Most a plugin's platform and channel calls may hold in the host while they are pending: their
 * arguments, which the host keeps until the service answers. CALLS_IN_FLIGHT bounds how many
 * calls an execution has in the host; this bounds their size, so that a runner out of the host's
 * process (a thread, a child, a remote worker) cannot fill the host's memory with the arguments
 * of calls to a slow service. Counted per plugin, not per execution: a call outlives the execution
 * that made it until the service answers.
 */
export const MAX_HELD_CALL_BYTES = 64 * 1024 * 1024;

/** What each plugin's pending calls hold in this process (every copy of core in it), by plugin id (absent: nothing). */
const heldByPlugin = processShared('held-call-bytes', () => new Map<string, number>());

/**
 * Count what `args` hold against the plugin's allowance; returns the bytes to give back with
 * `releaseCall` once the call has settled. Throws, holding nothing, when they do not fit.
 */
export function holdCall(pluginId: string, called: string, args: readonly unknown[]): number {
  const bytes = approximateBytes(args, MAX_HELD_CALL_BYTES);
  if (bytes > MAX_HELD_CALL_BYTES) {
    throw new ValidationError(`The arguments of ${called} are over ${formatMiB(MAX_HELD_CALL_BYTES)}, the most the host holds for a plugin's pending calls (MAX_HELD_CALL_BYTES)`, {
      details: { path: 'args', reason: 'too-large', limit: MAX_HELD_CALL_BYTES, pluginId, called },
    });
  }
  const held = heldByPlugin.get(pluginId) ?? 0;
  if (held + bytes > MAX_HELD_CALL_BYTES) {
    throw new QueueFullError(
      `${called} was refused: the host already holds ${formatMiB(held)} of this plugin's pending platform and channel call arguments, and takes at most ${formatMiB(MAX_HELD_CALL_BYTES)} (MAX_HELD_CALL_BYTES); call again once earlier calls have answered`,
      { details: { reason: 'calls-held', pluginId, called, heldBytes: held, bytes, limit: MAX_HELD_CALL_BYTES } },
    );
  }
  heldByPlugin.set(pluginId, held + bytes);
  return bytes;
}

/** Give back what `holdCall` counted for a call that has settled. */
export function releaseCall(pluginId: string, bytes: number): void {
  const left = (heldByPlugin.get(pluginId) ?? 0) - bytes;
  if (left > 0) heldByPlugin.set(pluginId, left);
  else heldByPlugin.delete(pluginId);
}

/** What the plugin's pending calls hold now (for tests and stats). */
export function heldCallBytes(pluginId: string): number {
  return heldByPlugin.get(pluginId) ?? 0;
}

/**
 * About how many bytes `value` takes, as a message decoded in the host: a character per byte of a
 * string, a buffer's whole backing store (a view of it brought all of it over), 8 bytes per other
 * value and per slot of an object or array. Stops counting once over `limit`. Walks with a stack
 * of its own (a value nested 100 000 deep is fine) and sees each object once (a cycle is fine).
 */
export function approximateBytes(value: unknown, limit: number): number {
  let total = 0;
  const pending: unknown[] = [value];
  let seen: Set<object> | undefined;
  while (pending.length > 0 && total <= limit) {
    const item = pending.pop();
    if (typeof item === 'string') {
      total += item.length;
      continue;
    }
    total += 8;
    if (item === null || (typeof item !== 'object' && typeof item !== 'function')) continue;
    seen ??= new Set();
    if (seen.has(item)) continue;
    seen.add(item);
    if (Array.isArray(item)) {
      // A slot each up front: a sparse array a billion long is over the limit before it is walked.
      total += 8 * item.length;
      if (total <= limit) for (let i = 0; i < item.length; i++) pending.push(item[i]);
      continue;
    }
    const proto = Object.getPrototypeOf(item);
    const held = proto === Object.prototype || proto === null ? undefined : heldBy(item, pending);
    if (held !== undefined) total += held;
    else {
      const keys = Object.keys(item);
      total += 8 * keys.length;
      for (let i = 0; i < keys.length && total <= limit; i++) pending.push(keys[i], (item as Record<string, unknown>)[keys[i]!]);
    }
  }
  return total;
}

/**
 * The bytes a buffer or view holds, or 0 with what a Map, Set or Error holds queued on `pending`;
 * undefined for another object. Told by their brand, not instanceof: a thread's message, decoded by
 * Node for a host run in a vm context (a test file under Jest), is of Node's realm.
 */
function heldBy(item: object, pending: unknown[]): number | undefined {
  if (types.isAnyArrayBuffer(item)) return item.byteLength;
  if (ArrayBuffer.isView(item)) return item.buffer.byteLength;
  if (types.isMap(item)) for (const [key, entry] of item) pending.push(key, entry);
  else if (types.isSet(item)) for (const entry of item) pending.push(entry);
  else if (item instanceof Error || types.isNativeError(item)) pending.push(item.message, item.stack, ...Object.values(item));
  else return undefined;
  return 0;
}

function formatMiB(bytes: number): string {
  return `${Math.round((bytes / (1024 * 1024)) * 10) / 10} MiB`;
}

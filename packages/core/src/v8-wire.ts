import { ValidationError } from './errors.js';
import { pathOf, unserializableError, type Step } from './wire-clone.js';
import type { HostToRunner, RunnerToHost } from './protocol.js';
import { tightCopy } from './tight-views.js';
// Node's built-in by getBuiltinModule, as in wire-clone.ts: no ES facade built at start-up.
const v8 = process.getBuiltinModule('node:v8');
const { types } = process.getBuiltinModule('node:util');

/**
 * v8's deserialiser, except that a Buffer comes back as the plain Uint8Array that structured
 * clone makes of one. Backends whose messages are v8-serialised (a subprocess's frames, a queue's
 * bodies) then hand hosts and handlers what the others do: `Buffer.isBuffer` and
 * `toString('utf8')` do not work on one backend only. And each view gets its own buffer: v8's
 * makes it a window on the bytes being read, which hold other messages too (tight-views.ts).
 */
class CloneLikeDeserializer extends v8.DefaultDeserializer {
  /** Node's documented hook for host objects (Buffers and typed arrays among them). */
  _readHostObject(): unknown {
    const value: unknown = readHostObject.call(this);
    return ArrayBuffer.isView(value) ? tightCopy(value) : value;
  }
}

const readHostObject = (v8.DefaultDeserializer.prototype as unknown as { _readHostObject(): unknown })._readHostObject;

/** `v8.deserialize(bytes)`, with Buffers as Uint8Arrays (see CloneLikeDeserializer). Throws as v8.deserialize does. */
export function deserializeLikeClone(bytes: Uint8Array): unknown {
  const deserializer = new CloneLikeDeserializer(bytes as Buffer);
  deserializer.readHeader();
  return deserializer.readValue();
}

/**
 * A message that crossed whole but cannot be rebuilt where it arrived: nested deeper than the
 * reader's stack allows (a worker thread's stack is larger than a process's), or holding a value
 * the reader's Node does not know (a Float16Array, from Node 24 on, read on Node 20 or 22).
 * VALIDATION_ERROR, `details.reason: 'unreadable-message'`, on every backend. `where`: "by the
 * host", "in the handler's process" …
 */
export function unreadableMessageError(what: string, where: string, error: unknown): ValidationError {
  const message = String((error as Error)?.message ?? error);
  const tooDeep = (error as Error)?.name === 'RangeError' && /call stack/i.test(message);
  const why = tooDeep ? 'it is nested deeper than can be rebuilt there' : 'it holds a value that Node cannot read, such as an Error that is its own cause (Node writes it but cannot read it back), or a Float16Array (Node 24 and later) read on Node 20 or 22';
  return new ValidationError(`${what} could not be read ${where} (Node ${process.version}): ${why} (${message})`, {
    details: { reason: 'unreadable-message', message, node: process.version },
    cause: error,
  });
}

/**
 * Throw, before a message goes out on a v8-serialised wire, the DataCloneError structured clone
 * throws for the plugin's or the host's value it carries (a result, an event, a log line's
 * fields, a call's arguments or answer). v8's serialiser writes what Node marks as not
 * cloneable (a URL, Headers or a CryptoKey from Node 22 on) as an empty object, where the other
 * backends refuse it: refused here, it is refused alike (the caller names where, as for a function).
 */
export function refuseWhatCloneRefuses(message: RunnerToHost | HostToRunner): void {
  const value = carriedValue(message);
  if (value === null || typeof value !== 'object') return;
  let copy: unknown;
  try {
    copy = structuredClone(value);
  } catch (error) {
    // Nested too deep for this stack to copy: v8's serialiser may still write it, and the reader says whether it can rebuild it.
    if (error instanceof RangeError) return;
    throw error;
  }
  refuseWhatV8Loses(copy);
}

/**
 * Throw a DataCloneError, with where (`refusedPath`, which unserializableError names), for an
 * object of `value` that structured clone keeps and v8's serialiser writes as `{}`: Node's own
 * cloneable objects, a CryptoKey on Node 22, a net.BlockList or SocketAddress on 22 and 24. The
 * subprocess and queue wires would hand `{}` on without a word where the other backends hand the
 * object over. `value`: what structured clone made (plain data but for such objects), or a task's
 * input or context, cloned on its way in.
 */
export function refuseWhatV8Loses(value: unknown): void {
  const lost = lostByV8(value);
  if (lost) throw Object.assign(new DOMException(`#<${lost.kind}> could not be cloned.`, 'DataCloneError'), { refusedPath: lost.path });
}

/** A task's input or context holding what v8's serialiser loses (refuseWhatV8Loses): the VALIDATION_ERROR naming which and where. */
export function refuseTaskWhatV8Loses(task: { readonly input?: unknown; readonly context?: unknown }): void {
  for (const what of ['input', 'context'] as const) {
    try {
      refuseWhatV8Loses(task[what]);
    } catch (error) {
      throw unserializableError(what, error, task[what]);
    }
  }
}

/** Prototypes of what v8's serialiser writes whole (a clone's plain data); an object of another is tried on its own. */
const WRITTEN_WHOLE = new Set<unknown>(
  ([Object, Array, Date, RegExp, Map, Set, ArrayBuffer, DataView, Boolean, Number, String, BigInt, Error, EvalError, RangeError, ReferenceError, SyntaxError, TypeError, URIError] as Array<{ prototype: unknown }>)
    .concat([Uint8Array, Uint8ClampedArray, Uint16Array, Uint32Array, Int8Array, Int16Array, Int32Array, Float32Array, Float64Array, BigInt64Array, BigUint64Array])
    .map((type) => type.prototype),
);

/** The first object of `value` (a walk, not recursion) whose class v8's serialiser does not keep, and where. */
function lostByV8(value: unknown): { path: PropertyKey[]; kind: string } | undefined {
  const seen = new Set<object>();
  const pending: Array<{ value: unknown; at: Step | undefined }> = [{ value, at: undefined }];
  while (pending.length > 0) {
    const { value: v, at } = pending.pop()!;
    if (v === null || typeof v !== 'object' || seen.has(v)) continue;
    seen.add(v);
    const proto: unknown = Object.getPrototypeOf(v);
    if (proto !== null && !WRITTEN_WHOLE.has(proto) && !keptByV8(v, proto)) return { path: pathOf(at), kind: kindOf(proto) };
    if (ArrayBuffer.isView(v) || v instanceof ArrayBuffer) continue;
    const step = (key: PropertyKey, item: unknown): void => void pending.push({ value: item, at: { key, parent: at } });
    if (v instanceof Map) for (const [key, item] of v) (step(key as PropertyKey, key), step(key as PropertyKey, item));
    else if (v instanceof Set) [...v].forEach((item, i) => step(i, item));
    else for (const key of Object.keys(v)) step(Array.isArray(v) && /^(?:0|[1-9]\d*)$/.test(key) ? Number(key) : key, (v as Record<string, unknown>)[key]);
  }
  return undefined;
}

/**
 * Whether v8's serialiser writes `v` back as an object of its own class (a Float16Array on Node 24
 * is; a CryptoKey on 22 is not), or an error as an Error (a DOMException inside a value, Node 22
 * and later: docs/backends/subprocess.md).
 */
function keptByV8(v: object, proto: unknown): boolean {
  try {
    const back: unknown = v8.deserialize(v8.serialize(v));
    return Object.getPrototypeOf(back) === proto || (types.isNativeError(v) && types.isNativeError(back));
  } catch {
    // v8 refuses it itself: said as such where the message is written.
    return true;
  }
}

function kindOf(proto: unknown): string {
  const name: unknown = (proto as { constructor?: { name?: unknown } }).constructor?.name;
  return typeof name === 'string' && name ? name : 'Object';
}

function carriedValue(message: RunnerToHost | HostToRunner): unknown {
  switch (message.type) {
    case 'result':
      return message.ok ? message.data : undefined;
    case 'event':
      return message.event;
    case 'log':
      return message.fields;
    case 'rpc':
      return message.args;
    case 'rpc-reply':
      return message.ok ? message.value : undefined;
    default:
      return undefined;
  }
}

import { ValidationError } from './errors.js';
import type { HostToRunner, RunnerToHost } from './protocol.js';
import { tightCopy } from './tight-views.js';
// Node's built-in by getBuiltinModule, as in wire-clone.ts: no ES facade built at start-up.
const v8 = process.getBuiltinModule('node:v8');

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
  try {
    structuredClone(value);
  } catch (error) {
    // Nested too deep for this stack to copy: v8's serialiser may still write it, and the reader says whether it can rebuild it.
    if (error instanceof RangeError) return;
    throw error;
  }
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

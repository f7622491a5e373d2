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

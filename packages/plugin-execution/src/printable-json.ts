/**
 * A value as the CLI prints it: JSON of everything structured clone carries, where
 * `JSON.stringify` would throw (a cycle, a BigInt) or print something else than the value (`{}`
 * for a Map, a Set or an Error, `{"0":104,…}` for bytes, `null` for NaN). Documented in the CLI's
 * help and the README's "Command line":
 * - a reference back to an object that contains it: `"[Circular: $.path]"`, the path (in the
 *   printed JSON, `$` its top) of the object it points back to;
 * - Map: an array of `[key, value]` pairs; Set: an array of its values;
 * - Error: `{ name, message, stack, …own fields, cause }`;
 * - typed arrays, Buffer, ArrayBuffer, DataView: an array of their numbers (bytes for the last two);
 * - BigInt: `"10n"`; NaN, Infinity, -Infinity: those words, as strings;
 * - RegExp: its source (`"/a+/g"`); Date: its ISO time (`"Invalid Date"` for one that is not).
 * An object seen twice but not inside itself is printed twice, as JSON does.
 */
export function printableJson(value: unknown, indent?: number): string {
  return JSON.stringify(jsonValue(value, '$', new Map()), null, indent) ?? 'null';
}

type Ancestors = Map<object, string>;

function jsonValue(value: unknown, at: string, ancestors: Ancestors): unknown {
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'number') return Number.isFinite(value) ? value : String(value);
  if (value === null || typeof value !== 'object') return value;
  const seenAt = ancestors.get(value);
  if (seenAt !== undefined) return `[Circular: ${seenAt}]`;
  ancestors.set(value, at);
  try {
    return objectValue(value, at, ancestors);
  } finally {
    ancestors.delete(value);
  }
}

const tag = (value: object) => Object.prototype.toString.call(value).slice(8, -1);

function objectValue(value: object, at: string, ancestors: Ancestors): unknown {
  const each = (items: Iterable<unknown>) => Array.from(items, (item, i) => jsonValue(item, `${at}[${i}]`, ancestors));
  if (Array.isArray(value)) return each(Array.from(value));
  if (value instanceof Map) return Array.from(value, ([k, v], i) => [jsonValue(k, `${at}[${i}][0]`, ancestors), jsonValue(v, `${at}[${i}][1]`, ancestors)]);
  if (value instanceof Set) return each(value);
  if (value instanceof ArrayBuffer || tag(value) === 'SharedArrayBuffer') return Array.from(new Uint8Array(value as ArrayBuffer));
  if (value instanceof DataView) return Array.from(new Uint8Array(value.buffer, value.byteOffset, value.byteLength));
  if (ArrayBuffer.isView(value)) return each(value as unknown as Iterable<unknown>);
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? 'Invalid Date' : value.toISOString();
  if (value instanceof RegExp) return String(value);
  // Boxed primitives (new String('x'), Object(1n)) as their value.
  if (['String', 'Number', 'Boolean', 'BigInt'].includes(tag(value))) return jsonValue(value.valueOf(), at, ancestors);
  const out: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
  const field = (key: string, item: unknown) => {
    out[key] = jsonValue(item, `${at}${pathKey(key)}`, ancestors);
  };
  if (value instanceof Error || tag(value) === 'Error') {
    const error = value as Error;
    field('name', error.name);
    field('message', error.message);
    if (typeof error.stack === 'string') field('stack', error.stack);
  }
  for (const key of Object.keys(value)) field(key, (value as Record<string, unknown>)[key]);
  if ((value instanceof Error || tag(value) === 'Error') && Object.hasOwn(value, 'cause')) field('cause', (value as Error).cause);
  return out;
}

/** `.name`, or `["a key"]` for a key that is not a plain name. */
function pathKey(key: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
}

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
 * - RegExp: its source (`"/a+/g"`); Date: its ISO time (`"Invalid Date"` for one that is not);
 * - an array with holes: `{ "[sparse array]": { "length": N, "items": { "<index>": value, … } } }`,
 *   its elements by index (never a `null` for each hole: a length of 1e8 is a few bytes on the wire).
 * An object seen twice but not inside itself is printed twice, as JSON does. Throws a RangeError
 * for a value whose JSON is longer than a string can be, or nested deeper than the stack goes.
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
  if (Array.isArray(value)) return hasHole(value) ? sparseArray(value, at, ancestors) : each(value);
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

/** Whether `array` lacks an element below its length: stops at the first hole, so a sparse array costs little. */
function hasHole(array: unknown[]): boolean {
  for (let i = 0; i < array.length; i++) if (!(i in array)) return true;
  return false;
}

/** An array index as a key (Object.keys gives them first, ascending; a property such as `a.note` after). */
const INDEX = /^(?:0|[1-9]\d*)$/;

/** An array with holes as its length and its elements by index: what it holds, not a `null` per hole. */
function sparseArray(array: unknown[], at: string, ancestors: Ancestors): unknown {
  const items: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
  const itemsAt = `${at}["[sparse array]"].items`;
  for (const key of Object.keys(array)) {
    if (INDEX.test(key) && Number(key) < array.length) items[key] = jsonValue(array[Number(key)], `${itemsAt}${pathKey(key)}`, ancestors);
  }
  return { '[sparse array]': { length: array.length, items } };
}

/** `.name`, or `["a key"]` for a key that is not a plain name. */
function pathKey(key: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
}

/**
 * Thread side: can a result travel as piscina's own reply? That reply is posted by piscina's
 * worker code, where a DataCloneError would kill the thread; so only values that structured
 * clone certainly accepts go that way (one message instead of two). Everything else goes over
 * the thread channel, where a refusal is caught and reported as VALIDATION_ERROR.
 */
const getPrototypeOf = Object.getPrototypeOf;
const keysOf = Object.keys;
const isArray = Array.isArray;
const OBJECT = Object.prototype;
const ARRAY = Array.prototype;
const DATE = Date.prototype;

/** Nodes looked at before giving up (and taking the channel): keeps the check far cheaper than the copy. */
const BUDGET = 256;
const MAX_DEPTH = 16;

/**
 * True only for plain data: primitives (no symbols), arrays, objects whose prototype is
 * Object.prototype or null, and Dates, small and shallow. False means "not sure", never "no".
 */
export function plainlyCloneable(value: unknown): boolean {
  let budget = BUDGET;
  const visit = (v: unknown, depth: number): boolean => {
    if (--budget < 0) return false;
    switch (typeof v) {
      case 'string':
      case 'number':
      case 'boolean':
      case 'undefined':
      case 'bigint':
        return true;
      case 'object':
        break;
      default:
        return false;
    }
    if (v === null) return true;
    if (depth >= MAX_DEPTH) return false;
    const proto = getPrototypeOf(v);
    if (proto === ARRAY && isArray(v)) {
      const list = v as unknown[];
      // Holes or extra properties: let structured clone judge.
      if (keysOf(list).length !== list.length) return false;
      for (let i = 0; i < list.length; i++) if (!visit(list[i], depth + 1)) return false;
      return true;
    }
    if (proto === OBJECT || proto === null) {
      const record = v as Record<string, unknown>;
      const keys = keysOf(record);
      for (let i = 0; i < keys.length; i++) if (!visit(record[keys[i]!], depth + 1)) return false;
      return true;
    }
    return proto === DATE;
  };
  try {
    return visit(value, 0);
  } catch {
    // A getter threw: structured clone will say what it thinks, on the channel.
    return false;
  }
}

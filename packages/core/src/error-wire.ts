/**
 * The wire form of errors: how an error crosses a thread, a process or a machine and comes back
 * as the same class. The far side may be hostile: `deserializeError` checks every field before
 * use and caps nesting, so arbitrary JSON gives an Error, never a TypeError or a stack overflow.
 */
import { ERROR_CLASSES, ExecutionError, HandlerError, isErrorCode, isExecutionError, type ExecutionErrorOptions } from './errors.js';
import { MAX_DEPTH, MAX_KEYS, MAX_WALK_VALUES, defineData, describeThrown, describeValue, hasOwnSafe, isError, isInstance, readProp, readStack, safeString, spendOnWalk, toWireValue, truncate, withinOneWalk } from './wire-value.js';

/** JSON-safe form of any error, ours or foreign, with its cause chain. */
export interface SerializedError {
  $error: 1;
  /** Class name: `TimeoutError`, `TypeError`, a handler's own `MyError` … */
  name: string;
  message: string;
  /** Present for our family; absent for foreign errors unless they had a string code. */
  code?: string;
  stack?: string;
  details?: Record<string, unknown>;
  /** Own enumerable properties of a foreign error (e.g. `errno`, `path`, custom fields). */
  props?: Record<string, unknown>;
  cause?: SerializedError | { $value: unknown };
  /** Errors inside an AggregateError. */
  errors?: SerializedError[];
}

export function isSerializedError(value: unknown): value is SerializedError {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as { $error?: unknown }).$error === 1 &&
    typeof (value as { message?: unknown }).message === 'string'
  );
}

/** Serialise an error (or any thrown value as the cause of nothing) to its wire form. */
export function serializeError(error: unknown): SerializedError {
  return serializeErrorAt(error, new WeakSet(), 0);
}

/**
 * An error the host sends a runner (a platform service's rejection, the reason of a stop): as
 * serializeError, with each stack in it (its causes' and its errors' too) cut to its first line
 * and `at`. The frames below are the host's: they name its files and layout, which a handler,
 * sandboxed or not, has no need to learn. Name, message, code, details and own props stay.
 */
export function serializeErrorForRunner(error: unknown, at: string): SerializedError {
  const wire = serializeError(error);
  const cut = (e: SerializedError, depth: number): void => {
    if (depth > MAX_DEPTH) return;
    if (e.stack !== undefined) e.stack = `${e.name}: ${e.message}\n    at ${at}`;
    if (e.cause && '$error' in e.cause) cut(e.cause, depth + 1);
    for (const inner of e.errors ?? []) cut(inner, depth + 1);
  };
  cut(wire, 0);
  return wire;
}

export function serializeErrorAt(error: unknown, seen: WeakSet<object>, depth: number): SerializedError {
  if (!isError(error)) {
    return { $error: 1, name: 'Error', message: describeThrown(error) };
  }
  // An AggregateError listing one error 100 times, each listing it again, is 100^8 errors: each
  // counts against the walk's budget, with what its name, message and stack take.
  if (!spendOnWalk(seen, 0)) return { $error: 1, name: 'Error', message: '[Truncated]' };
  const e = error as Error & { code?: unknown; details?: unknown; errors?: unknown };
  // `seen` holds the errors on the path from the root only, so a cycle is cut but an error that
  // appears twice (in `errors` and as `cause`, say) is written both times.
  seen.add(e);
  try {
    return serializeErrorFields(e, seen, depth);
  } finally {
    seen.delete(e);
  }
}

function serializeErrorFields(e: Error, seen: WeakSet<object>, depth: number): SerializedError {
  const name = safeString(readProp(e, 'name')) || 'Error';
  const message = safeString(readProp(e, 'message'));
  const kept = spendOnWalk(seen, name.length + message.length);
  const out: SerializedError = { $error: 1, name: kept ? name : 'Error', message: kept ? message : '[Truncated]' };
  const stack = readStack(e);
  const stackText = typeof stack === 'string' ? truncate(stack) : undefined;
  if (stackText !== undefined && spendOnWalk(seen, stackText.length)) out.stack = stackText;
  const code = readProp(e, 'code');
  if (typeof code === 'string') out.code = code;
  if (isExecutionError(e)) {
    // `details` is always present for our family: it is how the far side knows the class.
    const details = readProp(e, 'details');
    const wired = details && typeof details === 'object' ? toWireValue(details, seen, depth + 1) : undefined;
    out.details = wired && typeof wired === 'object' && !Array.isArray(wired) ? (wired as Record<string, unknown>) : {};
  } else {
    // A foreign error's own `code` that is not a string (gRPC's 14), its `details`, and an
    // `errors` list outside an AggregateError are its own props like any other.
    const props = ownProps(e, seen, depth, out.code !== undefined, isInstance(e, AggregateError));
    if (props) out.props = props;
  }
  const cause = readProp(e, 'cause');
  if (cause !== undefined || hasOwnSafe(e, 'cause')) {
    if (typeof cause === 'object' && cause !== null && seen.has(cause)) {
      out.cause = { $value: '[Circular]' };
    } else if (depth >= MAX_DEPTH) {
      out.cause = { $value: '[Truncated]' };
    } else if (isError(cause)) {
      out.cause = serializeErrorAt(cause, seen, depth + 1);
    } else {
      out.cause = { $value: toWireValue(cause, seen, depth + 1) };
    }
  }
  const errors = readProp(e, 'errors');
  if (isInstance(e, AggregateError) && depth < MAX_DEPTH) {
    try {
      if (Array.isArray(errors)) {
        out.errors = errors
          .slice(0, MAX_KEYS)
          .map((inner) =>
            typeof inner === 'object' && inner !== null && seen.has(inner)
              ? { $error: 1 as const, name: 'Error', message: '[Circular]' }
              : serializeErrorAt(inner, seen, depth + 1),
          );
      }
    } catch {
      // A hostile `errors` (a Proxy whose traps throw): leave it out.
    }
  }
  return out;
}

const SUPPRESSED_KEYS = ['error', 'suppressed'];

/** An error's fields the wire form carries apart from its props. */
const SKIP_PROPS = new Set(['name', 'message', 'stack', 'cause']);

/**
 * Props never copied onto a revived error: its own fields, and names of inherited methods. A wire
 * `props.toString` (data, or a function turned into a string) would make `String(error)` throw on the host.
 */
const SHADOW_KEYS: ReadonlySet<string> = new Set([...SKIP_PROPS, ...Object.getOwnPropertyNames(Object.prototype), ...Object.getOwnPropertyNames(Error.prototype)]);

function ownProps(e: object, seen: WeakSet<object>, depth: number, codeCarried: boolean, errorsCarried: boolean): Record<string, unknown> | undefined {
  let keys: string[];
  try {
    keys = Object.keys(e);
    // A SuppressedError's (what `using` throws, Node 24) `error` and `suppressed` are own but not enumerable.
    if (readProp(e, 'name') === 'SuppressedError') keys.push(...SUPPRESSED_KEYS.filter((key) => hasOwnSafe(e, key) && !keys.includes(key)));
  } catch {
    return undefined;
  }
  let out: Record<string, unknown> | undefined;
  for (const key of keys.slice(0, MAX_KEYS)) {
    if (SKIP_PROPS.has(key) || key === '__proto__' || (key === 'code' && codeCarried) || (key === 'errors' && errorsCarried)) continue;
    out ??= {};
    defineData(out, key, toWireValue(readProp(e, key), seen, depth + 1));
  }
  return out;
}

/** Rebuild an error from its wire form: our classes by code, foreign errors as `Error` with name and props. */
export function deserializeError(wire: unknown): Error {
  if (!isSerializedError(wire)) {
    return new HandlerError(describeThrown(wire), { details: { thrown: describeValue(wire) } });
  }
  return deserializeAt(wire, 0, { left: MAX_WALK_VALUES, cut: withinOneWalk(wire) ? undefined : new WeakSet() });
}

/**
 * How many more errors one deserializeError may revive: no more than a wire form serializeError
 * wrote holds (MAX_WALK_VALUES). A message keeps an object listed twice one object (structured
 * clone, v8's serialiser), so a few KB listing one error 100 times at each of 8 levels was 100^8
 * errors revived, the host's event loop held for good; past the bound, they are left out.
 */
interface Revival {
  left: number;
  /**
   * Set when the wire form is bigger than one walk of serializeError writes, or lists one object
   * many times over (a forged one: a child writing to its fd 3, a peer speaking as a queue worker):
   * its details, props and causes that are no error are cut as serializeError cuts them, in one
   * walk (this `seen`). Else a 100,000-character string, or one object listed 100 times at each of
   * 8 levels, reached the caller whole.
   */
  cut: WeakSet<object> | undefined;
}

/** A value of a wire form as serializeError would have written it at `depth` (Revival.cut). */
function asWritten(value: unknown, depth: number, revival: Revival): unknown {
  return revival.cut ? toWireValue(value, revival.cut, depth) : value;
}

// The wire may come from a hostile runner: every field is checked before use, and nesting is
// capped as on the way out, so arbitrary JSON gives an Error and never a TypeError or a stack overflow.
function deserializeAt(wire: SerializedError, depth: number, revival: Revival): Error {
  revival.left--;
  const hasCause = wire.cause !== undefined;
  const cause = hasCause ? reviveCause(wire.cause, depth, revival) : undefined;
  const name = typeof wire.name === 'string' && wire.name ? wire.name : 'Error';
  const code = typeof wire.code === 'string' ? wire.code : undefined;
  const written = isPlainRecord(wire.details) ? asWritten(wire.details, depth + 1, revival) : wire.details;
  const details = isPlainRecord(written) ? written : written === undefined ? undefined : {};
  let error: Error;
  const Known = code !== undefined && isErrorCode(code) ? ERROR_CLASSES[code] : undefined;
  if (Known && details !== undefined) {
    // The wire's details are the far side's word: kept as sent, typed as that code's details.
    const Revived = Known as new (message: string, options: ExecutionErrorOptions) => ExecutionError;
    error = new Revived(wire.message, { details, ...(hasCause ? { cause } : {}) });
  } else if (code !== undefined && details !== undefined) {
    // A code from a newer version of the family: keep it as the base class.
    error = new ExecutionError(code, wire.message, { details, ...(hasCause ? { cause } : {}) });
  } else {
    const Ctor = builtinErrorClass(name);
    if (Ctor === AggregateError) {
      const inner = Array.isArray(wire.errors) && depth < MAX_DEPTH ? wire.errors.slice(0, MAX_KEYS) : [];
      const errors: Error[] = [];
      for (const item of inner) {
        if (revival.left <= 0) break;
        errors.push(isSerializedError(item) ? deserializeAt(item, depth + 1, revival) : (revival.left--, deserializeError(item)));
      }
      error = new AggregateError(errors, wire.message, hasCause ? { cause } : undefined);
    } else {
      error = new Ctor(wire.message, hasCause ? { cause } : undefined);
    }
    if (error.name !== name) {
      Object.defineProperty(error, 'name', { value: name, configurable: true, writable: true, enumerable: false });
    }
    if (code !== undefined) defineData(error as unknown as Record<string, unknown>, 'code', code);
    if (isPlainRecord(wire.props)) {
      for (const [key, value] of Object.entries(wire.props)) {
        if (SHADOW_KEYS.has(key) || (key === 'code' && code !== undefined) || (key === 'errors' && Ctor === AggregateError)) continue;
        defineData(error as unknown as Record<string, unknown>, key, asWritten(value, depth + 1, revival));
      }
    }
  }
  if (typeof wire.stack === 'string') {
    Object.defineProperty(error, 'stack', { value: wire.stack, configurable: true, writable: true, enumerable: false });
  }
  return error;
}

function reviveCause(cause: unknown, depth: number, revival: Revival): unknown {
  if (isSerializedError(cause)) return depth >= MAX_DEPTH || revival.left <= 0 ? '[Truncated]' : deserializeAt(cause, depth + 1, revival);
  if (typeof cause === 'object' && cause !== null && Object.hasOwn(cause, '$value')) return asWritten((cause as { $value: unknown }).$value, depth + 1, revival);
  return cause;
}

function isPlainRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function builtinErrorClass(name: string): new (message?: string, options?: ErrorOptions) => Error {
  switch (name) {
    case 'TypeError':
      return TypeError;
    case 'RangeError':
      return RangeError;
    case 'SyntaxError':
      return SyntaxError;
    case 'ReferenceError':
      return ReferenceError;
    case 'EvalError':
      return EvalError;
    case 'URIError':
      return URIError;
    case 'AggregateError':
      return AggregateError as unknown as new (message?: string, options?: ErrorOptions) => Error;
    default:
      return Error;
  }
}


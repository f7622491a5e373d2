/**
 * The error family. Codes are the API: hosts match on `error.code`, never on messages.
 *
 * Every error crosses thread and process boundaries in its wire form (`toJSON()` /
 * `serializeError`) and comes back as the same class via `deserializeError`.
 */

export const ERROR_CODES = [
  'HANDLER_NOT_FOUND',
  'TIMEOUT',
  'PERMISSION_DENIED',
  'QUEUE_FULL',
  'WORKER_CRASHED',
  'VALIDATION_ERROR',
  'ABORTED',
  'HANDLER_ERROR',
  'SHUTTING_DOWN',
  'WORKSPACE_ERROR',
  'BACKEND_NOT_INSTALLED',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

/** Marks our errors across copies of this package (ESM + CJS builds, two installs). */
const BRAND = Symbol.for('@kb-labs/plugin-execution/error');

export interface ExecutionErrorOptions {
  /** Structured, JSON-serialisable facts about the failure. */
  details?: Record<string, unknown>;
  /** What caused it; any thrown value is accepted and normalised on the wire. */
  cause?: unknown;
}

export class ExecutionError extends Error {
  readonly code: string;
  details: Record<string, unknown>;

  constructor(code: string, message: string, options: ExecutionErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options.details ?? {};
    // Keep `name` an own enumerable-free property so subclasses report their class name.
    Object.defineProperty(this, 'name', {
      value: new.target.name,
      configurable: true,
      writable: true,
      enumerable: false,
    });
  }

  /** The wire form, so `JSON.stringify(error)` keeps code, details, stack and cause. */
  toJSON(): SerializedError {
    return serializeError(this);
  }
}
Object.defineProperty(ExecutionError.prototype, BRAND, { value: true });

function errorClass<C extends ErrorCode>(code: C, defaultMessage: string) {
  return class extends ExecutionError {
    declare readonly code: C;
    constructor(message: string = defaultMessage, options?: ExecutionErrorOptions) {
      super(code, message, options);
    }
  };
}

/** The plugin or handler id is not registered, or its module/export cannot be found. */
export class HandlerNotFoundError extends errorClass('HANDLER_NOT_FOUND', 'Handler not found') {}
/** The execution exceeded its time limit; the handler was stopped where the backend can stop it. */
export class TimeoutError extends errorClass('TIMEOUT', 'Execution timed out') {}
/** The handler needs, or tried to use, something it was not granted. */
export class PermissionDeniedError extends errorClass('PERMISSION_DENIED', 'Permission denied') {}
/** The backend's queue is at capacity; nothing was queued. */
export class QueueFullError extends errorClass('QUEUE_FULL', 'Execution queue is full') {}
/** The thread or process running the handler died; only the executions on it fail. */
export class WorkerCrashedError extends errorClass('WORKER_CRASHED', 'Worker crashed') {}
/** A manifest, request, option or handler input is invalid; the message names each path. */
export class ValidationError extends errorClass('VALIDATION_ERROR', 'Validation failed') {}
/** The caller's AbortSignal fired. */
export class AbortedError extends errorClass('ABORTED', 'Execution aborted') {}
/** The handler threw (or rejected); `cause` is what it threw, name/stack/own props kept. */
export class HandlerError extends errorClass('HANDLER_ERROR', 'Handler failed') {}
/** The backend is shutting down or shut down and takes no new work. */
export class ShuttingDownError extends errorClass('SHUTTING_DOWN', 'Backend is shutting down') {}
/** A workspace directory could not be created, used or removed, or its id is unsafe. */
export class WorkspaceError extends errorClass('WORKSPACE_ERROR', 'Workspace error') {}
/** The backend package for the requested type cannot be resolved. */
export class BackendNotInstalledError extends errorClass(
  'BACKEND_NOT_INSTALLED',
  'Backend package is not installed',
) {}

const CLASSES: Record<ErrorCode, new (message?: string, options?: ExecutionErrorOptions) => ExecutionError> = {
  HANDLER_NOT_FOUND: HandlerNotFoundError,
  TIMEOUT: TimeoutError,
  PERMISSION_DENIED: PermissionDeniedError,
  QUEUE_FULL: QueueFullError,
  WORKER_CRASHED: WorkerCrashedError,
  VALIDATION_ERROR: ValidationError,
  ABORTED: AbortedError,
  HANDLER_ERROR: HandlerError,
  SHUTTING_DOWN: ShuttingDownError,
  WORKSPACE_ERROR: WorkspaceError,
  BACKEND_NOT_INSTALLED: BackendNotInstalledError,
};

const CODE_SET: ReadonlySet<string> = new Set(ERROR_CODES);

/**
 * True for errors of this family, including ones made by another copy of this package
 * (checked by brand, then by name/code shape; `instanceof` alone fails across copies).
 * The shape check wants the family's class name for the code: a library's own
 * `Object.assign(new Error(), { code: 'TIMEOUT' })` is not one of ours, and must not be reported as one.
 * Never throws, even for a hostile Proxy.
 */
export function isExecutionError(value: unknown): value is ExecutionError {
  if (typeof value !== 'object' || value === null) return false;
  try {
    if (value instanceof ExecutionError) return true;
    if ((value as Record<symbol, unknown>)[BRAND] === true) return true;
    const candidate = value as { code?: unknown; name?: unknown };
    const code = candidate.code;
    return value instanceof Error && typeof code === 'string' && CODE_SET.has(code) && candidate.name === CLASSES[code as ErrorCode].name;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Wire form
// ---------------------------------------------------------------------------------------------

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

const MAX_DEPTH = 8;
const MAX_KEYS = 100;
const MAX_STRING = 64 * 1024;

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

function serializeErrorAt(error: unknown, seen: WeakSet<object>, depth: number): SerializedError {
  if (!isError(error)) {
    return { $error: 1, name: 'Error', message: describeThrown(error) };
  }
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
  const out: SerializedError = {
    $error: 1,
    name: safeString(readProp(e, 'name')) || 'Error',
    message: safeString(readProp(e, 'message')),
  };
  const stack = readProp(e, 'stack');
  if (typeof stack === 'string') out.stack = truncate(stack);
  const code = readProp(e, 'code');
  if (typeof code === 'string') out.code = code;
  if (isExecutionError(e)) {
    // `details` is always present for our family: it is how the far side knows the class.
    const details = readProp(e, 'details');
    const wired = details && typeof details === 'object' ? toWireValue(details, seen, depth + 1) : undefined;
    out.details = wired && typeof wired === 'object' && !Array.isArray(wired) ? (wired as Record<string, unknown>) : {};
  } else {
    const props = ownProps(e, seen, depth);
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

const SKIP_PROPS = new Set(['name', 'message', 'stack', 'cause', 'code', 'details', 'errors']);

/**
 * Props never copied onto a revived error: our own fields, and names of inherited methods. A wire
 * `props.toString` (data, or a function turned into a string) would make `String(error)` throw on the host.
 */
const SHADOW_KEYS: ReadonlySet<string> = new Set([...SKIP_PROPS, ...Object.getOwnPropertyNames(Object.prototype), ...Object.getOwnPropertyNames(Error.prototype)]);

function ownProps(e: object, seen: WeakSet<object>, depth: number): Record<string, unknown> | undefined {
  let keys: string[];
  try {
    keys = Object.keys(e);
  } catch {
    return undefined;
  }
  let out: Record<string, unknown> | undefined;
  for (const key of keys.slice(0, MAX_KEYS)) {
    if (SKIP_PROPS.has(key) || key === '__proto__') continue;
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
  return deserializeAt(wire, 0);
}

// The wire may come from a hostile runner: every field is checked before use, and nesting is
// capped as on the way out, so arbitrary JSON gives an Error and never a TypeError or a stack overflow.
function deserializeAt(wire: SerializedError, depth: number): Error {
  const hasCause = wire.cause !== undefined;
  const cause = hasCause ? reviveCause(wire.cause, depth) : undefined;
  const name = typeof wire.name === 'string' && wire.name ? wire.name : 'Error';
  const code = typeof wire.code === 'string' ? wire.code : undefined;
  const details = isPlainRecord(wire.details) ? wire.details : wire.details === undefined ? undefined : {};
  let error: Error;
  const Known = code !== undefined && CODE_SET.has(code) ? CLASSES[code as ErrorCode] : undefined;
  if (Known && details !== undefined) {
    error = new Known(wire.message, { details, ...(hasCause ? { cause } : {}) });
  } else if (code !== undefined && details !== undefined) {
    // A code from a newer version of the family: keep it as the base class.
    error = new ExecutionError(code, wire.message, { details, ...(hasCause ? { cause } : {}) });
  } else {
    const Ctor = builtinErrorClass(name);
    if (Ctor === AggregateError) {
      const inner = Array.isArray(wire.errors) && depth < MAX_DEPTH ? wire.errors.slice(0, MAX_KEYS) : [];
      error = new AggregateError(
        inner.map((item: unknown) => (isSerializedError(item) ? deserializeAt(item, depth + 1) : deserializeError(item))),
        wire.message,
        hasCause ? { cause } : undefined,
      );
    } else {
      error = new Ctor(wire.message, hasCause ? { cause } : undefined);
    }
    if (error.name !== name) {
      Object.defineProperty(error, 'name', { value: name, configurable: true, writable: true, enumerable: false });
    }
    if (code !== undefined) defineData(error as unknown as Record<string, unknown>, 'code', code);
    if (isPlainRecord(wire.props)) {
      for (const [key, value] of Object.entries(wire.props)) {
        if (SHADOW_KEYS.has(key)) continue;
        defineData(error as unknown as Record<string, unknown>, key, value);
      }
    }
  }
  if (typeof wire.stack === 'string') {
    Object.defineProperty(error, 'stack', { value: wire.stack, configurable: true, writable: true, enumerable: false });
  }
  return error;
}

function reviveCause(cause: unknown, depth: number): unknown {
  if (isSerializedError(cause)) return depth >= MAX_DEPTH ? '[Truncated]' : deserializeAt(cause, depth + 1);
  if (typeof cause === 'object' && cause !== null && Object.hasOwn(cause, '$value')) return (cause as { $value: unknown }).$value;
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

/**
 * Normalise anything a handler threw into our family. Our own errors pass through (a handler
 * that lets a PermissionDeniedError from `ctx.platform` escape reports PERMISSION_DENIED);
 * everything else becomes a HandlerError whose `cause` is the thrown value.
 */
export function toHandlerError(thrown: unknown): ExecutionError {
  if (isExecutionError(thrown)) return thrown;
  if (isError(thrown)) {
    const e = thrown as Error;
    const error = new HandlerError(safeString(readProp(e, 'message')) || safeString(readProp(e, 'name')) || 'Handler threw', {
      details: { name: safeString(readProp(e, 'name')) || 'Error' },
      cause: e,
    });
    const stack = readProp(e, 'stack');
    if (typeof stack === 'string') {
      Object.defineProperty(error, 'stack', { value: stack, configurable: true, writable: true, enumerable: false });
    }
    return error;
  }
  return new HandlerError(describeThrown(thrown), { details: { thrown: describeValue(thrown) } });
}

/**
 * Make sure an error survives a trip through the wire as-is: in-process backends run their
 * errors through this so every backend hands the host the same shape.
 */
export function roundTripError(error: unknown): ExecutionError {
  const revived = deserializeError(serializeError(error));
  return isExecutionError(revived) ? revived : toHandlerError(revived);
}

// ---------------------------------------------------------------------------------------------
// Value description helpers
// ---------------------------------------------------------------------------------------------

function isErrorLike(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return false;
  try {
    return Object.prototype.toString.call(value) === '[object Error]';
  } catch {
    return false;
  }
}

function hasOwnSafe(target: object, key: string): boolean {
  try {
    return Object.hasOwn(target, key);
  } catch {
    return false;
  }
}

/** `instanceof` that answers false instead of throwing (a Proxy's getPrototypeOf trap may throw). */
function isInstance(value: unknown, Ctor: abstract new (...args: never[]) => unknown): boolean {
  try {
    return value instanceof Ctor;
  } catch {
    return false;
  }
}

function isError(value: unknown): boolean {
  return isInstance(value, Error) || isErrorLike(value);
}

function readProp(target: object, key: string): unknown {
  try {
    return (target as Record<string, unknown>)[key];
  } catch (error) {
    return `[Getter threw: ${error instanceof Error ? error.message : 'unknown'}]`;
  }
}

function safeString(value: unknown): string {
  if (typeof value === 'string') return truncate(value);
  if (value === undefined || value === null) return '';
  try {
    return truncate(String(value));
  } catch {
    return '';
  }
}

function truncate(value: string): string {
  return value.length > MAX_STRING ? `${value.slice(0, MAX_STRING)}… [${value.length - MAX_STRING} more chars]` : value;
}

function defineData(target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, configurable: true, writable: true, enumerable: true });
}

/** A short, human description of a thrown non-Error, for messages. */
export function describeThrown(value: unknown): string {
  if (value === undefined) return 'Handler threw undefined';
  if (value === null) return 'Handler threw null';
  switch (typeof value) {
    case 'string':
      return `Handler threw a string: ${truncate(value).slice(0, 500)}`;
    case 'number':
    case 'boolean':
    case 'bigint':
      return `Handler threw a ${typeof value}: ${String(value)}`;
    case 'symbol':
      return `Handler threw a symbol: ${value.toString()}`;
    case 'function':
      return `Handler threw a function${value.name ? `: ${value.name}` : ''}`;
    default: {
      let preview: string;
      try {
        preview = JSON.stringify(toWireValue(value, new WeakSet(), 0)).slice(0, 500);
      } catch {
        preview = '[unprintable]';
      }
      return `Handler threw a non-Error object: ${preview}`;
    }
  }
}

/** `{ type, value }` of a thrown non-Error, JSON-safe. */
export function describeValue(value: unknown): { type: string; value?: unknown } {
  let isArray = false;
  try {
    isArray = Array.isArray(value);
  } catch {
    // A revoked Proxy.
  }
  const type = value === null ? 'null' : isArray ? 'array' : typeof value;
  if (value === undefined) return { type };
  return { type, value: toWireValue(value, new WeakSet(), 0) };
}

/**
 * Turn any value into something JSON and structured clone both accept: cycles become
 * '[Circular]', functions/symbols/bigints become strings, depth and width are capped.
 */
export function toWireValue(value: unknown, seen: WeakSet<object> = new WeakSet(), depth = 0): unknown {
  switch (typeof value) {
    case 'string':
      return truncate(value);
    case 'number':
      return Number.isFinite(value) ? value : String(value);
    case 'boolean':
      return value;
    case 'undefined':
      return undefined;
    case 'bigint':
      return `${value}n`;
    case 'symbol':
      return value.toString();
    case 'function':
      return `[Function${value.name ? ` ${value.name}` : ''}]`;
    default:
      break;
  }
  if (value === null) return null;
  const obj = value as object;
  if (seen.has(obj)) return '[Circular]';
  if (depth >= MAX_DEPTH) return '[Truncated]';
  if (isError(obj)) return serializeErrorAt(obj, seen, depth + 1);
  seen.add(obj);
  try {
    if (obj instanceof Date) return Number.isNaN(obj.getTime()) ? 'Invalid Date' : obj.toISOString();
    if (Array.isArray(obj)) {
      const arr = obj.slice(0, MAX_KEYS).map((item) => toWireValue(item, seen, depth + 1));
      if (obj.length > MAX_KEYS) arr.push(`[${obj.length - MAX_KEYS} more items]`);
      return arr;
    }
    const out: Record<string, unknown> = {};
    let keys: string[];
    try {
      keys = Object.keys(obj);
    } catch {
      return '[Unreadable object]';
    }
    for (const key of keys.slice(0, MAX_KEYS)) {
      defineData(out, key, toWireValue(readProp(obj, key), seen, depth + 1));
    }
    if (keys.length > MAX_KEYS) defineData(out, '…', `${keys.length - MAX_KEYS} more keys`);
    return out;
  } catch {
    // A hostile Proxy (throwing traps, revoked): describe it rather than fail the caller.
    return '[Unreadable object]';
  } finally {
    seen.delete(obj);
  }
}

/**
 * The error family. Codes are the API: hosts match on `error.code`, never on messages. One table
 * (ERROR_CLASSES) defines every code and its class; `details` is typed per code (error-details.ts).
 *
 * Every error crosses thread, process and machine boundaries in its wire form (`toJSON()` /
 * `serializeError`, error-wire.ts) and comes back as the same class via `deserializeError`.
 */
import type { ErrorDetailsByCode } from './error-details.js';
import { describeThrown, describeValue, isError, readProp, readStack, safeString, throwsOnRead, toWireValue, truncate } from './wire-value.js';
import { serializeError, type SerializedError } from './error-wire.js';
import { reportedDetails } from './handler-details.js';

const { isDeepStrictEqual, types: { isProxy } } = process.getBuiltinModule('node:util');

/** Marks our errors across copies of this package (ESM + CJS builds, two installs). */
const BRAND = Symbol.for('@kb-labs/plugin-execution/error');

export interface ExecutionErrorOptions<D = Record<string, unknown>> {
  /** Structured, JSON-serialisable facts about the failure (typed per code: error-details.ts). */
  details?: D;
  /** What caused it; any thrown value is accepted and normalised on the wire. */
  cause?: unknown;
}

/**
 * The base class. Its `code` is a string so that an error from a newer version of the family
 * (a code this version does not know, say from a remote worker) still arrives as one of ours;
 * every code this version knows has its own subclass below, with a literal `code`.
 */
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

  /**
   * `instanceof` holds across copies of this package too (a host whose backend brought a core of
   * its own): an error of another copy carries the same registered brand, and its code names its
   * class here (`instanceof TimeoutError` for a TIMEOUT; any code for ExecutionError itself).
   */
  static override [Symbol.hasInstance](value: unknown): boolean {
    if (ownCopy(this, value)) return true;
    const code = brandedCode(value);
    return code !== undefined && namesClass(code, this);
  }
}
Object.defineProperty(ExecutionError.prototype, BRAND, { value: true });

/**
 * `code` is one `Class` stands for: any code for ExecutionError itself, its own for a subclass.
 * Outside the class body: a class that names itself inside is renamed by the bundler
 * (`class _ExecutionError`), and its instances' `name` with it.
 */
function namesClass(code: string, Class: unknown): boolean {
  return Class === ExecutionError || (isErrorCode(code) && (ERROR_CLASSES[code] as unknown) === Class);
}

/** `value` made by `Class` of this copy of the package (plain `instanceof`, the prototype chain). */
function ownCopy(Class: abstract new (...args: never[]) => unknown, value: unknown): boolean {
  return Function.prototype[Symbol.hasInstance].call(Class, value);
}

/** The code of an error of this family made by another copy of the package (its brand), else undefined. Never throws. */
function brandedCode(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  try {
    const code = (value as { code?: unknown }).code;
    return (value as Record<symbol, unknown>)[BRAND] === true && typeof code === 'string' ? code : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A subclass's constructor arguments: `details` may be left out only where every field of its
 * code's details is optional (a TimeoutError without its `timeoutMs` would lie to whoever reads it).
 */
type ErrorArgs<D> = {} extends D ? [message?: string, options?: ExecutionErrorOptions<D>] : [message: string | undefined, options: ExecutionErrorOptions<D> & { details: D }];

function errorClass<C extends keyof ErrorDetailsByCode>(code: C, defaultMessage: string) {
  return class extends ExecutionError {
    declare readonly code: C;
    declare details: ErrorDetailsByCode[C];
    constructor(...[message = defaultMessage, options]: ErrorArgs<ErrorDetailsByCode[C]>) {
      super(code, message, options as ExecutionErrorOptions);
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
/** The thread, process or worker running the handler died or was lost; only the executions on it fail. */
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
export class BackendNotInstalledError extends errorClass('BACKEND_NOT_INSTALLED', 'Backend package is not installed') {}
/** The host side failed (a bug here, or in the host's own code such as a platform service's setup): not the handler's fault. */
export class InternalError extends errorClass('INTERNAL_ERROR', 'Internal error') {}

/** Every code and its class: the one list of the family. */
export const ERROR_CLASSES = {
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
  INTERNAL_ERROR: InternalError,
} as const satisfies { [C in keyof ErrorDetailsByCode]: new (message: string | undefined, options: ExecutionErrorOptions<ErrorDetailsByCode[C]> & { details: ErrorDetailsByCode[C] }) => ExecutionError & { code: C } };

/** Every error code this version knows. */
export type ErrorCode = keyof typeof ERROR_CLASSES;

export const ERROR_CODES = Object.freeze(Object.keys(ERROR_CLASSES)) as readonly ErrorCode[];

/**
 * An error of the family with a code this version knows: a union discriminated on `code`, so
 * `if (error.code === 'TIMEOUT')` narrows to TimeoutError and its typed `details`.
 */
export type KnownExecutionError = { [C in ErrorCode]: InstanceType<(typeof ERROR_CLASSES)[C]> }[ErrorCode];

/** The error class of a code (`ErrorOf<'TIMEOUT'>` is TimeoutError). */
export type ErrorOf<C extends ErrorCode> = InstanceType<(typeof ERROR_CLASSES)[C]>;

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERROR_CLASSES, value);
}

/**
 * True for errors of this family, including ones made by another copy of this package
 * (checked by brand, then by name/code shape; `instanceof` alone fails across copies).
 * The shape check wants the family's class name for the code: a library's own
 * `Object.assign(new Error(), { code: 'TIMEOUT' })` is not one of ours, and must not be reported as one.
 * Never throws, even for a hostile Proxy.
 */
export function isExecutionError(value: unknown): value is KnownExecutionError {
  if (typeof value !== 'object' || value === null) return false;
  try {
    if (ownCopy(ExecutionError, value)) return true;
    if ((value as Record<symbol, unknown>)[BRAND] === true) return true;
    const candidate = value as { code?: unknown; name?: unknown };
    const code = candidate.code;
    return value instanceof Error && isErrorCode(code) && candidate.name === ERROR_CLASSES[code].name;
  } catch {
    return false;
  }
}

/**
 * The codes a handler may report by throwing one of our errors: what `ctx` itself throws at it
 * (PERMISSION_DENIED from `ctx.platform`, VALIDATION_ERROR from a bad argument) and its own
 * verdict on its input. The others tell what happened to the execution (TIMEOUT, ABORTED,
 * WORKER_CRASHED …) or that it never ran (QUEUE_FULL, SHUTTING_DOWN …): a handler cannot know the
 * first and is wrong about the second, and a host acting on them (a retry of what "never ran", an
 * alert on an out-of-memory crash) must be able to trust them.
 */
const HANDLER_MAY_REPORT: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['HANDLER_ERROR', 'VALIDATION_ERROR', 'PERMISSION_DENIED']);

/**
 * What a handler threw, as the execution reports it: one of our errors of a code it may report
 * (HANDLER_MAY_REPORT, plus `alsoAllowed`) as it is, any other one as HANDLER_ERROR naming it
 * (`details.name`, `details.code`; the error itself as `cause`), anything else as toHandlerError.
 */
export function handlerThrew(thrown: unknown, alsoAllowed: readonly ErrorCode[] = []): KnownExecutionError {
  if (!isExecutionError(thrown)) return toHandlerError(thrown);
  // Read once, safely: a forged one (another copy's brand on a plugin's object) may have getters that throw, or no name.
  const code = safeString(readProp(thrown, 'code'));
  if (isErrorCode(code) && alsoAllowed.includes(code)) return toHandlerError(thrown);
  if (isErrorCode(code) && HANDLER_MAY_REPORT.has(code)) return withReportedDetails(toHandlerError(thrown));
  const name = safeString(readProp(thrown, 'name')) || (isErrorCode(code) ? ERROR_CLASSES[code].name : 'ExecutionError');
  return new HandlerError(truncate(`The handler threw ${name} (${code}): ${safeString(readProp(thrown, 'message'))}`), { details: { name, code }, cause: thrown });
}

/**
 * Normalise anything a handler threw into our family. Our own errors pass through (a handler
 * that lets a PermissionDeniedError from `ctx.platform` escape reports PERMISSION_DENIED);
 * everything else becomes a HandlerError whose `cause` is the thrown value.
 */
export function toHandlerError(thrown: unknown): KnownExecutionError {
  // One of another copy of the package (a plugin's own install, the other of the ESM and CommonJS
  // builds) is made one of ours, as the wire would make it: `instanceof` works on every backend.
  // Another copy's error (or one only shaped like ours) is copied into this copy's class, read safely: never passed on as the plugin's object.
  if (isExecutionError(thrown)) return ownCopy(ExecutionError, thrown) ? thrown : asOurs(thrown);
  if (isError(thrown)) {
    const e = thrown as Error;
    const ownName = safeString(readProp(e, 'name'));
    const name = ownName || 'Error';
    const message = throwsOnRead(e, 'message') ? `The handler threw ${name}, whose message could not be read: ${safeString(readProp(e, 'message'))}` : safeString(readProp(e, 'message'));
    const error = new HandlerError(message || ownName || 'Handler threw', { details: { name }, cause: e });
    // Cut as its message is (and as the wire cuts both): the error's own fields stay bounded on every
    // backend, in-process too, whose `cause` is the thrown error itself, whole.
    const stack = readStack(e);
    if (typeof stack === 'string') {
      Object.defineProperty(error, 'stack', { value: truncate(stack), configurable: true, writable: true, enumerable: false });
    }
    return error;
  }
  return new HandlerError(describeThrown(thrown), { details: { thrown: describeValue(thrown) } });
}

/**
 * An error only shaped like ours (a plain Error given our name and code: a plugin re-throwing what
 * another service sent it) made one of ours, as the wire would make it: `instanceof` works, and
 * `details` is an object.
 */
function asOurs(shaped: KnownExecutionError, withDetails?: Record<string, unknown>): KnownExecutionError {
  const details = withDetails ?? readProp(shaped, 'details');
  const cause = readProp(shaped, 'cause');
  // Read again, safely: a getter may answer another code this time (then it is the handler's own error).
  const code = safeString(readProp(shaped, 'code'));
  const Class = (isErrorCode(code) ? ERROR_CLASSES[code] : HandlerError) as new (message?: string, options?: ExecutionErrorOptions<object>) => KnownExecutionError;
  const error = new Class(safeString(readProp(shaped, 'message')), {
    details: copiedDetails(details),
    ...(cause !== undefined ? { cause } : {}),
  });
  const stack = readStack(shaped);
  if (typeof stack === 'string') Object.defineProperty(error, 'stack', { value: truncate(stack), configurable: true, writable: true, enumerable: false });
  return error;
}

/**
 * A copy of an error's `details` record (`{}` for what is not one). Read as the wire reads it when
 * copying it throws (a plugin's getter, a Proxy trap, a revoked Proxy): what threw is said
 * (`[Getter threw: …]`), not thrown, which in-process made the plugin's error an INTERNAL_ERROR.
 */
function copiedDetails(details: unknown): Record<string, unknown> {
  try {
    return typeof details === 'object' && details !== null && !Array.isArray(details) ? { ...details } : {};
  } catch {
    return detailsAsWired(details);
  }
}

/** An error's details as the wire carries them (depth 1: where it puts them), a record; `{}` for what is not one. */
function detailsAsWired(details: unknown): Record<string, unknown> {
  const wired = toWireValue(details, new WeakSet(), 1);
  return typeof wired === 'object' && wired !== null && !Array.isArray(wired) ? (wired as Record<string, unknown>) : {};
}

/**
 * A VALIDATION_ERROR or PERMISSION_DENIED (or HANDLER_ERROR) a handler reported, its details kept
 * to that code's shape (handler-details.ts) and to what the wire carries of them: a BigInt as
 * `"1n"`, a Map as `{}`, a cycle cut, a getter read once. On a thread, a child or a queue worker the
 * wire does that anyway; in-process the host got the plugin's own values, and a host that wrote
 * `error.details` as JSON (an HTTP 400 body) threw there alone. The error itself is passed on when
 * its details already are what the wire would carry.
 */
function withReportedDetails(error: KnownExecutionError): KnownExecutionError {
  const details = readProp(error, 'details');
  let plain = false;
  try {
    plain = typeof details === 'object' && details !== null && !Array.isArray(details) && !isProxy(details);
  } catch {
    // Read as the wire reads it, below.
  }
  // Where the wire puts an error's details, so that it is cut where the other backends cut it.
  const reported = reportedDetails(error.code, detailsAsWired(details));
  try {
    if (plain && isDeepStrictEqual(reported, details) && fitsTheWire(error)) return error;
  } catch {
    // A getter that throws as it is compared: the copy read above is what is reported.
  }
  return asOurs(error, reported);
}

/**
 * Its message and stack as the wire carries them, uncut: else the copy asOurs makes, cut as every
 * other backend reports it (in-process handed the host a plugin's 10 MB message, twice in a log line).
 */
function fitsTheWire(error: object): boolean {
  const message = readProp(error, 'message');
  const stack = readStack(error);
  return typeof message === 'string' && truncate(message) === message && (typeof stack !== 'string' || truncate(stack) === stack);
}

/**
 * For a failure on the host's side of an execution (a bug in a backend, a host hook that threw):
 * our own errors pass through, anything else is INTERNAL_ERROR with the thrown value as its cause.
 * Never reported as the handler's error.
 */
export function toInternalError(thrown: unknown, where: string): KnownExecutionError {
  if (isExecutionError(thrown)) return thrown;
  let what = typeof thrown === 'string' ? safeString(thrown).slice(0, 500) : `a thrown ${describeValue(thrown).type}`;
  if (isError(thrown)) what = safeString(readProp(thrown as object, 'message'));
  return new InternalError(`Internal error in ${where}: ${what || 'unknown failure'}`, { details: { where, what }, cause: thrown });
}

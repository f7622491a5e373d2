import { ValidationError } from '../errors.js';
import { thrownText } from '../wire-value.js';
import { validationError } from '../validation.js';
import { setOwn } from './caller-paths.js';
import { nearest } from './nearest-name.js';
import { BACKEND_PACKAGES, type BuiltInBackendType } from './backend-packages.js';
import { BACKEND_OPTION_NAMES } from './backend-own-options.js';
import type { ExecutionBackendOptions } from './lazy-backend.js';

/**
 * `createExecutionBackend()`'s options read once, as a backend's constructor reads them: the
 * backend `type` (in-process when left out) and the rest. Throws ValidationError for options that
 * are not an object, an unknown or unset `type`, and a getter or Proxy trap of the caller's that throws.
 */
export function takeBackendOptions(options: ExecutionBackendOptions): { type: BuiltInBackendType; given: Record<string, unknown> } {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new ValidationError(`createExecutionBackend() needs an options object, got ${options === null ? 'null' : Array.isArray(options) ? 'an array' : typeof options}`);
  }
  const keys = ownKeysOf(options);
  const type = (readOption(options, 'type') ?? 'in-process') as BuiltInBackendType;
  const problem = typeProblem(options, keys);
  if (problem) throw validationError('Invalid backend options', [{ path: 'type', message: problem }]);
  return { type, given: optionsAsGiven(options, keys) };
}

/** The options' own enumerable keys; a Proxy whose `ownKeys` throws is the caller's mistake, named. */
function ownKeysOf(options: ExecutionBackendOptions): string[] {
  return reading("its options' keys", '(options)', () => Object.keys(options));
}

/**
 * What is wrong with `options.type`, if anything. Only a type left out means in-process: `type:
 * null` (a setting read as null) is a mistake, and so is `type: undefined` (a setting that is not
 * set, `process.env.BACKEND`): the backend that isolates nothing must be chosen, not fallen into.
 */
function typeProblem(options: ExecutionBackendOptions, keys: readonly string[]): string | undefined {
  const types = Object.keys(BACKEND_PACKAGES);
  const named = types.map((t) => `"${t}"`).join(', ');
  const { type } = options;
  if (type === undefined) {
    if (keys.includes('type')) return `is undefined (a setting that is not set?): name one of ${named}, or leave "type" out for the in-process backend, which does not isolate handlers`;
    // A misspelt "type" would fall into the backend that isolates nothing.
    const misspelt = keys.find((key) => key.length <= 6 && nearest(key, ['type']) === 'type');
    return misspelt ? `is missing, and "${misspelt}" is not an option: did you mean "type"? (left out, it means the in-process backend, which does not isolate handlers)` : undefined;
  }
  if (Object.hasOwn(BACKEND_PACKAGES, type)) return undefined;
  const near = typeof type === 'string' ? nearest(type, types) : undefined;
  return `must be one of ${named}, got ${shownType(type)}${near ? `; did you mean "${near}"?` : ''}`;
}

/** A `type` that is none, as the caller would write it: a BigInt, a cycle or a throwing toJSON() said (JSON.stringify throws on them), a symbol or function not said "undefined". */
function shownType(type: unknown): string {
  if (typeof type === 'string') return JSON.stringify(type.length > 40 ? `${type.slice(0, 40)}…` : type);
  if (typeof type === 'bigint') return `the BigInt ${type}n`;
  if (typeof type === 'number' || typeof type === 'boolean' || type === null) return String(type);
  return typeof type === 'object' ? 'an object' : `a ${typeof type}`;
}

/**
 * The options but `type`, read now as a backend's constructor reads them: its own enumerable
 * keys, and every option name a backend takes however it is given (a class's getter, a
 * prototype's property). A getter that throws is the caller's mistake, named.
 */
function optionsAsGiven(options: ExecutionBackendOptions, keys: readonly string[]): Record<string, unknown> {
  const given: Record<string, unknown> = {};
  for (const key of keys) if (key !== 'type') setOwn(given, key, readOption(options, key));
  for (const key of BACKEND_OPTION_NAMES) if (!Object.hasOwn(given, key) && reading(`option "${key}"`, key, () => key in options)) given[key] = readOption(options, key);
  return given;
}

function readOption(options: ExecutionBackendOptions, key: string): unknown {
  return reading(`option "${key}"`, key, () => options[key]);
}

/** `read()`, a getter or Proxy trap of the caller's that throws said as a ValidationError naming `what`. */
function reading<T>(what: string, path: string, read: () => T): T {
  try {
    return read();
  } catch (error) {
    throw new ValidationError(`createExecutionBackend() could not read ${what}: ${thrownText(error)}`, { details: { path }, cause: error });
  }
}

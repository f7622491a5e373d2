import { ValidationError } from './errors.js';

/**
 * Structured-clone a value that is about to cross (or, in-process, would cross) a boundary.
 * Functions, symbols, class-bound handles … fail the same way on every backend: a
 * ValidationError naming what was being sent. Primitives skip the clone (the hot path).
 */
export function cloneForWire<T>(value: T, what: string): T {
  if (value === null || (typeof value !== 'object' && typeof value !== 'function' && typeof value !== 'symbol')) return value;
  try {
    return structuredClone(value);
  } catch (error) {
    throw new ValidationError(`${what} cannot be sent across the execution boundary: ${(error as Error)?.message ?? String(error)}`, {
      details: { what, reason: 'not-serializable' },
      cause: error,
    });
  }
}

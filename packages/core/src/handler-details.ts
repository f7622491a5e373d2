/**
 * The `details` of a VALIDATION_ERROR or PERMISSION_DENIED a handler reported by throwing it (one
 * of ctx's own, or its verdict on its input), kept to the shape docs/errors.md gives that code: a
 * plugin's word must not hand the host a `details.issues` that is not a list, or a `phase` that
 * says the execution was refused before it ran.
 */
import type { ValidationIssue } from './error-details.js';
import { MAX_KEYS } from './wire-value.js';

type Details = Record<string, unknown>;

const PERMISSION_STRINGS = ['pluginId', 'handlerId', 'resource', 'permission', 'path', 'service', 'method'] as const;
/** `preflight` is the host's refusal before anything ran: never a handler's. */
const HANDLER_PHASES: ReadonlySet<unknown> = new Set(['runtime', 'platform']);

/** `details` as reported for `code`, or `details` itself when it already has that shape. */
export function reportedDetails(code: string, details: Details): Details {
  if (code === 'VALIDATION_ERROR') return validationDetails(details);
  if (code === 'PERMISSION_DENIED') return permissionDetails(details);
  return details;
}

/**
 * What a plugin's list holds at its first MAX_KEYS places (as many as the wire carries of an
 * array), holes left out, and whether that is all of it: a list a billion long (or a sparse one)
 * costs no more than a short one, and every backend keeps the same items.
 */
export function firstItems(list: readonly unknown[]): { items: unknown[]; whole: boolean } {
  const end = Math.min(list.length, MAX_KEYS);
  const items: unknown[] = [];
  for (let i = 0; i < end; i++) if (Object.hasOwn(list, i)) items.push(list[i]);
  return { items, whole: items.length === list.length };
}

function validationDetails(details: Details): Details {
  const { issues, phase, path, reason } = details;
  const first = Array.isArray(issues) ? firstItems(issues) : undefined;
  const issuesFit = issues === undefined || (first !== undefined && first.whole && first.items.every(isIssue));
  const stringsFit = [phase, path, reason].every((value) => value === undefined || typeof value === 'string');
  if (issuesFit && stringsFit) return details;
  const out: Details = { ...details };
  if (!issuesFit) {
    const kept = first ? first.items.filter(isIssue) : [];
    if (kept.length > 0) out.issues = kept;
    else delete out.issues;
  }
  for (const key of ['phase', 'path', 'reason'] as const) if (out[key] !== undefined && typeof out[key] !== 'string') delete out[key];
  return out;
}

function isIssue(value: unknown): value is ValidationIssue {
  if (typeof value !== 'object' || value === null) return false;
  const { path, message } = value as { path?: unknown; message?: unknown };
  return typeof path === 'string' && typeof message === 'string';
}

function permissionDetails(details: Details): Details {
  const out: Details = {};
  for (const key of PERMISSION_STRINGS) if (typeof details[key] === 'string') out[key] = details[key];
  const { missing, phase } = details;
  if (Array.isArray(missing)) {
    // Cut as a VALIDATION_ERROR's issues are (firstItems): a list of a billion places is read no further than the wire carries.
    const first = firstItems(missing);
    const named = first.items.filter((item) => typeof item === 'string');
    if (first.whole && named.length === first.items.length) out.missing = missing;
    else if (named.length > 0) out.missing = named;
  }
  if (HANDLER_PHASES.has(phase)) out.phase = phase;
  const kept = Object.keys(out);
  return kept.length === Object.keys(details).length && kept.every((key) => out[key] === details[key]) ? details : out;
}

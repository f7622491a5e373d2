import { cutText } from '@kb-labs/plugin-execution-core/backend-kit';
import { isSubjectToken } from './subjects.js';
import { decode, type PresenceBody } from './wire.js';

/** The longest a worker says it waits between presences (its `heartbeatMs` option's bound). */
const MAX_HEARTBEAT_MS = 60_000;
/** The most executions a worker runs at once (its `concurrency` option's bound). */
const MAX_CONCURRENCY = 10_000;
/**
 * The longest isolation reason kept of a presence, in characters: a worker's own is a sentence with
 * a path or a line or two of bubblewrap's stderr; a longer one is cut, saying how much was left out
 * (health() quotes it; the worker stays listed).
 */
const MAX_REASON = 4096;

/** A name a worker gives itself on the wire (its host name, its backend): 1 to 256 characters. */
export const isName = (value: unknown): value is string => typeof value === 'string' && value.length > 0 && value.length <= 256;
/** A whole number from 0 to `most` (a pid, a count). */
export const isCount = (value: unknown, most = Number.MAX_SAFE_INTEGER): value is number => Number.isSafeInteger(value) && (value as number) >= 0 && (value as number) <= most;
const isTexts = (value: unknown, most: number): value is string[] => Array.isArray(value) && value.length <= most && value.every((each) => typeof each === 'string' && each.length <= 1024);
const isFlag = (value: unknown): boolean => value === undefined || typeof value === 'boolean';

/** A presence's isolation, of the fields workers send, its reason cut to MAX_REASON; undefined if it is not of their shape. */
function isolationOf(value: unknown): PresenceBody['isolation'] | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const { active, layers, reason } = value as Record<string, unknown>;
  if (!isName(active) || active.length > 64 || !isTexts(layers, 64) || typeof reason !== 'string') return undefined;
  return { active, layers: [...layers], reason: cutText(reason, MAX_REASON) };
}

/**
 * A worker's presence, as workers send it, of the fields they send only (what a host keeps of it
 * for its lost-worker window); anything else on the presence subject (a message that cannot be
 * read, or one of another shape: a peer's forgery, which would otherwise break health(), show a
 * worker of 1e9 slots in stats(), or stay listed for ever) is undefined, dropped.
 */
export function readPresence(data: Uint8Array): PresenceBody | undefined {
  let presence: Record<string, unknown> | null;
  try {
    presence = decode<Record<string, unknown> | null>(data);
  } catch {
    return undefined;
  }
  if (typeof presence !== 'object' || presence === null) return undefined;
  const { id, host, pid, concurrency, running, heartbeatMs, backend, isolation, closing, draining, plugins } = presence;
  // A worker's id is a token of the subjects sent to it (worker-options.ts).
  const worker = isSubjectToken(id) && isName(host) && isCount(pid) && isName(backend);
  const figures = isCount(concurrency, MAX_CONCURRENCY) && isCount(running, MAX_CONCURRENCY) && isCount(heartbeatMs, MAX_HEARTBEAT_MS);
  const isolated = isolation === undefined ? undefined : isolationOf(isolation);
  const rest = (isolation === undefined || isolated !== undefined) && isFlag(closing) && isFlag(draining) && (plugins === undefined || isTexts(plugins, 100_000));
  if (!worker || !figures || !rest) return undefined;
  return {
    id: id as string,
    host: host as string,
    pid: pid as number,
    concurrency: concurrency as number,
    running: running as number,
    heartbeatMs: heartbeatMs as number,
    backend: backend as string,
    ...(isolated ? { isolation: isolated } : {}),
    ...(closing === true ? { closing: true } : {}),
    ...(draining === true ? { draining: true } : {}),
    ...(plugins === undefined ? {} : { plugins: plugins as string[] }),
  };
}

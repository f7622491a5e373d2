import { decode, type PresenceBody } from './wire.js';

/** The longest a worker says it waits between presences (its `heartbeatMs` option's bound). */
const MAX_HEARTBEAT_MS = 60_000;

const isName = (value: unknown): value is string => typeof value === 'string' && value.length > 0 && value.length <= 256;
const isCount = (value: unknown): value is number => Number.isSafeInteger(value) && (value as number) >= 0;
const isTexts = (value: unknown, most: number): boolean => Array.isArray(value) && value.length <= most && value.every((each) => typeof each === 'string' && each.length <= 1024);
const isFlag = (value: unknown): boolean => value === undefined || typeof value === 'boolean';

function isIsolation(value: unknown): boolean {
  if (value === undefined) return true;
  const isolation = value as Record<string, unknown> | null;
  return typeof isolation === 'object' && isolation !== null && typeof isolation.active === 'string' && isTexts(isolation.layers, 64) && typeof isolation.reason === 'string';
}

/**
 * A worker's presence, as workers send it; anything else on the presence subject (a message that
 * cannot be read, or one of another shape: a peer's forgery, which would otherwise break health()
 * or stay listed for ever) is undefined, dropped.
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
  const worker = isName(id) && isName(host) && isCount(pid) && isName(backend);
  const figures = isCount(concurrency) && isCount(running) && isCount(heartbeatMs) && heartbeatMs <= MAX_HEARTBEAT_MS;
  const rest = isIsolation(isolation) && isFlag(closing) && isFlag(draining) && (plugins === undefined || isTexts(plugins, 100_000));
  return worker && figures && rest ? (presence as unknown as PresenceBody) : undefined;
}

import type { BackendType } from '../types.js';
import { processShared } from './process-shared.js';

/**
 * How many backends of one type may be open at once (created, `shutdown()` not called) before the
 * process is warned, once per type. Like Node's MaxListenersExceededWarning: a host that creates a
 * backend per request and never shuts it down keeps every one's runners — a worker-pool backend
 * keeps a thread of ~9 MB, so a hundred such requests held ~900 MB — and nothing else says so.
 */
export const OPEN_BACKENDS_WARNING_AT = 20;

// For the process, every copy of core in it (both builds, two installs): their backends are all open in it.
const open = processShared('open-backends', () => new Map<BackendType, number>());
const warned = processShared('open-backends-warned', () => new Set<BackendType>());

/** A backend was created; warns once per type when OPEN_BACKENDS_WARNING_AT are open at once. */
export function backendOpened(type: BackendType): void {
  const count = (open.get(type) ?? 0) + 1;
  open.set(type, count);
  if (count < OPEN_BACKENDS_WARNING_AT || warned.has(type)) return;
  warned.add(type);
  process.emitWarning(
    `${count} ${type} backends are open at once in this process, none of them shut down. Each keeps its own plugins, ` +
      'queue and runners (threads, processes or a server connection) until its shutdown(): create one backend and reuse it ' +
      'for every execution, and call shutdown() (or use `await using`) on one that is no longer needed',
    { code: 'KB_PLUGIN_MANY_BACKENDS' },
  );
}

/** A backend began its shutdown. */
export function backendClosed(type: BackendType): void {
  open.set(type, Math.max(0, (open.get(type) ?? 0) - 1));
}

import type { ExecutionError, PermissionSpec } from '@kb-labs/plugin-execution-core';

/** What a network call fails with in the sandbox's network namespace of its own (an empty loopback, no route, no resolver). */
const NO_NETWORK_CODES = new Set(['ECONNREFUSED', 'ENETUNREACH', 'EHOSTUNREACH', 'EAI_AGAIN', 'ENOTFOUND']);

/**
 * For a sandboxed handler's HANDLER_ERROR: when it failed on the network (a code above, in its
 * error's cause chain: `fetch failed` carries it in its cause) and its manifest does not declare
 * `network`, the reason, said where a plugin developed on another backend would not guess it.
 */
export function noNetworkNote(error: ExecutionError, permissions: PermissionSpec): string {
  if (permissions.network) return '';
  let cause: unknown = error.cause;
  for (let depth = 0; depth < 8 && cause !== null && typeof cause === 'object'; depth++) {
    const code = (cause as { code?: unknown }).code;
    if (typeof code === 'string' && NO_NETWORK_CODES.has(code)) {
      return `; it failed on the network (${code}) in the sandbox, which gives a handler whose manifest does not declare "network": true a network of its own with nothing in it`;
    }
    cause = (cause as { cause?: unknown }).cause;
  }
  return '';
}

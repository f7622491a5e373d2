import type { IncomingMessage } from 'node:http';
import type { ContextDescriptor } from '@kb-labs/plugin-execution-core';
import type { ConnectionInfo } from './connection-registry.js';
import { checkHostContext, type MountWebSocketChannelsOptions } from './options.js';

/** Where an accepted upgrade came in: the channel it matched and what its URL carried. */
export interface ConnectionOrigin {
  channel: string;
  pluginId: string;
  path: string;
  params: Record<string, string>;
  query: Record<string, string>;
}

/** The connection descriptor of a freshly upgraded socket; only the allowed headers are copied. */
export function describeConnection(origin: ConnectionOrigin, request: IncomingMessage, allowedHeaders: readonly string[], identity: unknown): ConnectionInfo {
  const { remoteAddress } = request.socket;
  return {
    id: crypto.randomUUID(),
    ...origin,
    headers: pickHeaders(request, allowedHeaders),
    ...(remoteAddress ? { remoteAddress } : {}),
    ...(identity !== undefined ? { identity } : {}),
    connectedAt: Date.now(),
  };
}

/**
 * The context descriptor of every execution of a connection: the host's extra fields (computed
 * once per connection when `options.context` is a function, which may throw) with `host` set to
 * the connection and its identity.
 */
export function connectionContext(info: ConnectionInfo, request: IncomingMessage, extraContext: MountWebSocketChannelsOptions['context']): ContextDescriptor {
  const extra = typeof extraContext === 'function' ? extraContext(info, request) : (extraContext ?? {});
  if (typeof (extra as { then?: unknown } | null)?.then === 'function') {
    // Its fields would be lost (a promise has none of its own) and its rejection left unhandled.
    Promise.resolve(extra).catch(() => undefined);
    throw new TypeError('The context option returned a promise: it must return the fields themselves, synchronously (look them up in authenticate, which may be async, and return them as its identity)');
  }
  if (typeof extraContext === 'function' && extra !== undefined) checkHostContext(extra);
  const { id, channel, path, params, query, headers, remoteAddress, identity } = info;
  return {
    ...(extra as ContextDescriptor),
    host: {
      kind: 'ws',
      connection: { id, channel, path, params, query, headers, ...(remoteAddress ? { remoteAddress } : {}) },
      ...(identity !== undefined ? { identity } : {}),
    },
  };
}

function pickHeaders(request: IncomingMessage, allowedHeaders: readonly string[]): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const name of allowedHeaders) {
    const value = request.headers[name];
    if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  return headers;
}

import { ValidationError, type ChannelSpec, type PluginManifest } from '@kb-labs/plugin-execution-core';
import { whenRejected } from '@kb-labs/plugin-execution-core/host-kit';
import type { ServerOptions, WebSocketServer } from 'ws';
import { DEFAULTS, defaultFormatError, type MountWebSocketChannelsOptions } from './options.js';
import { compileRoute, type Route } from './route.js';
import { ws } from './ws-module.js';
import type { ChannelLimits, SessionRuntime } from './session-runtime.js';

/** A channel as mounted: its manifest entry with every limit resolved. */
export interface MountedChannel {
  /** The mounted path pattern (basePath + manifest path); the channel's name in the registry. */
  readonly channel: string;
  readonly handler: string;
  readonly maxPayload: number;
  readonly concurrency: number;
  readonly maxInFlight: number;
  readonly timeoutMs: number | undefined;
  readonly auth: 'required' | 'optional';
}

/** One mounted channel with what serves it: its route, its ws server, the runtime its sessions share. */
export interface ChannelEntry {
  route: Route;
  mounted: MountedChannel;
  wss: WebSocketServer;
  runtime: SessionRuntime;
}

/** What every channel of one mount shares. */
export type SharedRuntime = Omit<SessionRuntime, 'pluginId' | 'handlerId' | 'limits'>;

/**
 * The channels a manifest declares, mounted under `basePath`: static paths sorted before
 * parameterised ones ("/rooms/lobby" wins over "/rooms/:room"). Throws ValidationError for a bad
 * path or two paths of the plugin that would shadow each other.
 */
export function mountChannels(manifest: PluginManifest, basePath: string, options: MountWebSocketChannelsOptions, shared: SharedRuntime): ChannelEntry[] {
  const seen = new Map<string, string>();
  const entries = (manifest.channels ?? []).map((spec, index) => {
    const route = routeOf(basePath, spec, index);
    const clash = seen.get(route.shape);
    if (clash !== undefined) throw new ValidationError(`channels[${index}].path ${spec.path} clashes with ${clash} of the same plugin`, { details: { path: spec.path } });
    seen.set(route.shape, spec.path);
    const limits = resolveLimits(spec, options);
    const hostPayload = options.maxPayload ?? DEFAULTS.maxPayload;
    const maxPayload = Math.min(spec.maxPayload ?? hostPayload, hostPayload);
    const mounted: MountedChannel = Object.freeze({
      channel: route.pattern,
      handler: spec.handler,
      maxPayload,
      concurrency: limits.concurrency,
      maxInFlight: Math.max(limits.maxInFlight, 1),
      timeoutMs: limits.timeoutMs,
      auth: spec.auth ?? 'optional',
    });
    // One ws server per channel: maxPayload is a per-server setting in ws. Compression stays off
    // (ws's server default), which also keeps decompression bombs out. No subprotocol is agreed
    // to (ws would echo the client's first offer): channels speak their own JSON frames, and a
    // client that needs a subprotocol is told, by its absence, that this server does not speak it.
    // A client that sent its close and keeps its TCP side open loses it after closeTimeoutMs, as
    // one that does not answer the server's close does (ChannelSession.close), not after ws's 30 s.
    // (closeTimeout: ws 8.19 and later, not yet in @types/ws.)
    const serverOptions: ServerOptions & { closeTimeout: number } = {
      noServer: true,
      clientTracking: false,
      maxPayload,
      maxBufferedChunks: maxFramePieces(maxPayload),
      perMessageDeflate: false,
      handleProtocols: () => false,
      closeTimeout: shared.closeTimeoutMs,
    };
    const wss = new (ws().WebSocketServer)(serverOptions);
    const runtime: SessionRuntime = { ...shared, pluginId: manifest.id, handlerId: spec.handler, limits };
    return { route, mounted, wss, runtime };
  });
  return entries.sort((a, b) => a.route.paramCount - b.route.paramCount);
}

/**
 * How many pieces (socket reads) of one frame ws holds before it closes the connection with 1008.
 * Each piece costs the host some 650 bytes however small it is, so ws's own 262,144 let a client
 * that trickles a frame in one-byte TCP segments make the host hold ~170 MB per connection for
 * 256 KB sent. A client's stack cuts a frame at the segment size (536 bytes at the least): twice
 * the pieces that takes, and no fewer than 64, leave every real client its frames.
 */
function maxFramePieces(maxPayload: number): number {
  return Math.max(64, Math.ceil(maxPayload / 256));
}

function routeOf(basePath: string, spec: ChannelSpec, index: number): Route {
  try {
    return compileRoute(basePath, spec.path);
  } catch (error) {
    throw new ValidationError(`channels[${index}].path: ${(error as Error).message}`, { details: { path: spec.path } });
  }
}

/**
 * The host's payload and in-flight limits are ceilings: a manifest (written by the plugin) may only
 * lower them. A channel may opt into concurrency, never beyond what may be in flight.
 */
function resolveLimits(spec: ChannelSpec, options: MountWebSocketChannelsOptions): ChannelLimits {
  const hostInFlight = options.maxInFlightPerConnection ?? DEFAULTS.maxInFlightPerConnection;
  const maxInFlight = Math.min(spec.maxInFlight ?? hostInFlight, hostInFlight);
  return {
    concurrency: Math.min(spec.concurrency ?? options.concurrencyPerConnection ?? DEFAULTS.concurrencyPerConnection, maxInFlight),
    maxInFlight,
    timeoutMs: spec.timeoutMs ?? options.timeoutMs,
    maxBufferedBytes: options.maxBufferedBytes ?? DEFAULTS.maxBufferedBytes,
  };
}

/**
 * The host's `formatError`, falling back to the default when it throws or returns anything but
 * `{ code, message }` of strings (nothing, a promise, a string): the client always gets an error
 * frame that says something, and its message is answered.
 */
export function safeFormatError(options: MountWebSocketChannelsOptions): SessionRuntime['formatError'] {
  const formatError = options.formatError ?? defaultFormatError;
  return (error, info) => {
    try {
      const shown: unknown = formatError(error, info);
      // An async one answers too late to be used; its rejection is handled here, not left unhandled.
      whenRejected(shown, () => undefined);
      const { code, message } = (shown ?? {}) as { code?: unknown; message?: unknown };
      if (typeof code === 'string' && typeof message === 'string') return { code, message };
    } catch {
      // The default, below.
    }
    return defaultFormatError(error);
  };
}

import { randomUUID } from 'node:crypto';
import type { IncomingMessage, Server as HttpServer } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import {
  PluginManifestSchema,
  ValidationError,
  parseWith,
  settlesWithin,
  type ChannelSpec,
  type ContextDescriptor,
  type IExecutionBackend,
  type PluginManifest,
  type PluginManifestInput,
  type RegisteredPlugin,
  type ShutdownOptions,
} from '@kb-labs/plugin-execution-core';
import { WebSocketServer, type WebSocket } from 'ws';
import { ChannelSession, type ChannelLimits, type MountCounters, type SessionRuntime } from './channel-session.js';
import { ConnectionRegistry, type ConnectionInfo } from './connection-registry.js';
import {
  DEFAULTS,
  defaultFormatError,
  validateOptions,
  type AuthenticateResult,
  type ChannelErrorInfo,
  type MountWebSocketChannelsOptions,
  type UnmountOptions,
} from './options.js';
import { compileRoute, matchRoute, normaliseBasePath, type Route } from './route.js';
import { UpgradeRouter, rejectUpgrade, type UpgradeServer, type UpgradeTarget } from './upgrade-router.js';

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

/** The session counters (frames, executions, refusals, closes) plus the mount's own. */
export interface ChannelMountStats extends MountCounters {
  /** Connections alive: connecting, open, or closed with executions still draining. */
  connections: number;
  upgradesAccepted: number;
  /** Refused upgrades by HTTP status. */
  upgradesRejected: Record<string, number>;
}

export interface ChannelMount extends AsyncDisposable {
  readonly registry: ConnectionRegistry;
  readonly channels: readonly MountedChannel[];
  /** True once unmount() started (directly or through the backend's shutdown). */
  readonly unmounted: boolean;
  stats(): ChannelMountStats;
  /**
   * Close every connection with 1001, remove the 'upgrade' listener and every timer, let running
   * executions and disconnect handlers finish (bounded by `timeoutMs`, then aborted). Idempotent.
   */
  unmount(options?: UnmountOptions): Promise<void>;
}

type ManifestSource = PluginManifestInput | PluginManifest | RegisteredPlugin;

/**
 * Serve the channels a plugin manifest declares on `server`'s WebSocket upgrades, running their
 * handler on `options.backend` (any backend). The mount unmounts itself when the backend shuts down.
 * Throws ValidationError for a bad manifest, bad options, a manifest without channels, or a path
 * already mounted on this server.
 */
export function mountWebSocketChannels(server: HttpServer | HttpsServer | UpgradeServer, manifest: ManifestSource, options: MountWebSocketChannelsOptions): ChannelMount {
  const validated = validateOptions(options);
  const parsed = parseWith(PluginManifestSchema, isRegisteredPlugin(manifest) ? manifest.manifest : manifest, 'Invalid plugin manifest for mountWebSocketChannels()');
  if (!parsed.channels || parsed.channels.length === 0) {
    throw new ValidationError(`Plugin "${parsed.id}" declares no "channels" to mount`, { details: { pluginId: parsed.id } });
  }
  return new WebSocketChannelMount(server as UpgradeServer, parsed, validated);
}

interface RouteEntry {
  route: Route;
  spec: ChannelSpec;
  mounted: MountedChannel;
  wss: WebSocketServer;
  runtime: SessionRuntime;
}

class WebSocketChannelMount implements ChannelMount, UpgradeTarget {
  readonly registry: ConnectionRegistry;
  readonly channels: readonly MountedChannel[];
  readonly basePath: string;
  readonly routes: readonly Route[];
  readonly #entries: RouteEntry[];
  readonly #options: MountWebSocketChannelsOptions;
  readonly #backend: IExecutionBackend;
  readonly #router: UpgradeRouter;
  readonly #sessions = new Set<ChannelSession>();
  /** Upgrades waiting for `authenticate`; unmount answers them 503 at once. */
  readonly #pending = new Set<(status: number) => void>();
  readonly #allowedHeaders: readonly string[];
  readonly #counters: MountCounters = {
    framesIn: 0,
    framesOut: 0,
    errorFrames: 0,
    badFrames: 0,
    queueFull: 0,
    executions: 0,
    failedExecutions: 0,
    denied: 0,
    heartbeatTimeouts: 0,
    backpressureCloses: 0,
  };
  #upgradesAccepted = 0;
  readonly #upgradesRejected: Record<string, number> = {};
  #heartbeat: NodeJS.Timeout | undefined;
  #unmounting: Promise<void> | undefined;
  #restoreBackend: (() => void) | undefined;

  constructor(server: UpgradeServer, manifest: PluginManifest, options: MountWebSocketChannelsOptions) {
    this.#options = options;
    this.#backend = options.backend;
    this.registry = options.connectionRegistry ?? new ConnectionRegistry();
    this.#allowedHeaders = (options.allowedHeaders ?? DEFAULTS.allowedHeaders).map((h) => h.toLowerCase());
    try {
      this.basePath = normaliseBasePath(options.basePath ?? DEFAULTS.basePath);
    } catch (error) {
      throw new ValidationError((error as Error).message, { details: { basePath: options.basePath } });
    }
    const formatError = options.formatError ?? defaultFormatError;
    const seen = new Map<string, string>();
    this.#entries = (manifest.channels ?? []).map((spec, index) => {
      let route: Route;
      try {
        route = compileRoute(this.basePath, spec.path);
      } catch (error) {
        throw new ValidationError(`channels[${index}].path: ${(error as Error).message}`, { details: { path: spec.path } });
      }
      const clash = seen.get(route.shape);
      if (clash !== undefined) throw new ValidationError(`channels[${index}].path ${spec.path} clashes with ${clash} of the same plugin`, { details: { path: spec.path } });
      seen.set(route.shape, spec.path);
      // The host's payload and in-flight limits are ceilings: a manifest (written by the plugin)
      // may only lower them. A channel may opt into concurrency, never beyond what may be in flight.
      const hostInFlight = options.maxInFlightPerConnection ?? DEFAULTS.maxInFlightPerConnection;
      const hostPayload = options.maxPayload ?? DEFAULTS.maxPayload;
      const maxInFlight = Math.min(spec.maxInFlight ?? hostInFlight, hostInFlight);
      const limits: ChannelLimits = {
        concurrency: Math.min(spec.concurrency ?? options.concurrencyPerConnection ?? DEFAULTS.concurrencyPerConnection, maxInFlight),
        maxInFlight,
        timeoutMs: spec.timeoutMs ?? options.timeoutMs,
        maxBufferedBytes: options.maxBufferedBytes ?? DEFAULTS.maxBufferedBytes,
      };
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
      // (ws's server default), which also keeps decompression bombs out.
      const wss = new WebSocketServer({ noServer: true, clientTracking: false, maxPayload, perMessageDeflate: false });
      const runtime: SessionRuntime = {
        backend: this.#backend,
        registry: this.registry,
        pluginId: manifest.id,
        handlerId: spec.handler,
        limits,
        counters: this.#counters,
        sendReady: options.sendReady ?? DEFAULTS.sendReady,
        abortOnClose: options.abortOnClose ?? DEFAULTS.abortOnClose,
        formatError: (error, info) => {
          try {
            return formatError(error, info);
          } catch {
            return defaultFormatError(error);
          }
        },
        reportError: (error, info) => this.#reportError(error, info),
        onLog: options.onLog,
        onEvent: options.onEvent,
      };
      return { route, spec, mounted, wss, runtime };
    });
    // Static paths win over parameterised ones ("/rooms/lobby" before "/rooms/:room").
    this.#entries.sort((a, b) => a.route.paramCount - b.route.paramCount);
    this.channels = this.#entries.map((e) => e.mounted);
    this.routes = this.#entries.map((e) => e.route);
    this.#router = UpgradeRouter.attach(server, this);
    const interval = options.heartbeatIntervalMs ?? DEFAULTS.heartbeatIntervalMs;
    if (interval > 0) {
      this.#heartbeat = setInterval(() => {
        for (const session of this.#sessions) session.heartbeat();
      }, interval);
      this.#heartbeat.unref();
    }
    this.#hookBackendShutdown();
  }

  get unmounted(): boolean {
    return this.#unmounting !== undefined;
  }

  tryAccept(request: IncomingMessage, socket: Duplex, head: Buffer, pathname: string, search: string): boolean {
    for (const entry of this.#entries) {
      const params = matchRoute(entry.route, pathname);
      if (params) {
        void this.#accept(entry, request, socket, head, pathname, params, search);
        return true;
      }
    }
    return false;
  }

  async #accept(entry: RouteEntry, request: IncomingMessage, socket: Duplex, head: Buffer, path: string, params: Record<string, string>, search: string): Promise<void> {
    const reject = (status: number, message?: string) => {
      this.#upgradesRejected[status] = (this.#upgradesRejected[status] ?? 0) + 1;
      rejectUpgrade(socket, status, message);
    };
    let upgraded = false;
    try {
      await this.#acceptOrReject(entry, request, socket, head, path, params, search, reject, () => (upgraded = true));
    } catch (error) {
      // Nothing may escape into an unhandled rejection; before the handshake the client gets a 500.
      this.#reportError(error, { phase: 'upgrade', channel: entry.route.pattern });
      if (!upgraded) reject(500);
      else socket.destroy();
    }
  }

  async #acceptOrReject(
    entry: RouteEntry,
    request: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    path: string,
    params: Record<string, string>,
    search: string,
    reject: (status: number, message?: string) => void,
    onUpgraded: () => void,
  ): Promise<void> {
    if (this.#unmounting) return reject(503);
    const maxConnections = this.#options.maxConnections ?? DEFAULTS.maxConnections;
    if (this.#sessions.size + this.#pending.size >= maxConnections) return reject(503);
    const query = Object.fromEntries(new URLSearchParams(search));
    let identity: unknown;
    const authenticate = this.#options.authenticate;
    if (authenticate) {
      const verdict = await this.#authenticate(authenticate, request, socket, { channel: entry.route.pattern, path, params, query });
      if (verdict.status !== undefined) return reject(verdict.status, verdict.message);
      identity = verdict.identity;
    }
    if (entry.mounted.auth === 'required' && identity === undefined) return reject(401, 'This channel requires authentication');
    if (socket.destroyed) return;
    entry.wss.handleUpgrade(request, socket, head, (ws) => {
      onUpgraded();
      this.#open(entry, ws, request, path, params, query, identity);
    });
  }

  /** Run the host's hook with a time limit; `status` set means refuse. Unmount cuts it short with 503. */
  #authenticate(
    authenticate: NonNullable<MountWebSocketChannelsOptions['authenticate']>,
    request: IncomingMessage,
    socket: Duplex,
    info: Parameters<NonNullable<MountWebSocketChannelsOptions['authenticate']>>[1],
  ): Promise<{ status?: number; message?: string; identity?: unknown }> {
    return new Promise((resolve) => {
      let settled = false;
      const finish = (verdict: { status?: number; message?: string; identity?: unknown }) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.#pending.delete(cancel);
        socket.off('error', onSocketError);
        resolve(verdict);
      };
      const cancel = (status: number) => finish({ status });
      // A client that resets while we wait must not raise an unhandled 'error'.
      const onSocketError = () => socket.destroy();
      socket.on('error', onSocketError);
      this.#pending.add(cancel);
      const timer = setTimeout(() => {
        this.#reportError(new Error(`authenticate() did not answer within ${this.#authTimeoutMs()} ms`), { phase: 'authenticate', channel: info.channel });
        finish({ status: 503 });
      }, this.#authTimeoutMs());
      Promise.resolve()
        .then(() => authenticate(request, info))
        .then(
          (result) => {
            try {
              finish(readVerdict(result));
            } catch (error) {
              this.#reportError(error, { phase: 'authenticate', channel: info.channel });
              finish({ status: 500 });
            }
          },
          (error: unknown) => {
            this.#reportError(error, { phase: 'authenticate', channel: info.channel });
            finish({ status: 500 });
          },
        );
    });
  }

  #authTimeoutMs(): number {
    return this.#options.authenticateTimeoutMs ?? DEFAULTS.authenticateTimeoutMs;
  }

  #open(entry: RouteEntry, ws: WebSocket, request: IncomingMessage, path: string, params: Record<string, string>, query: Record<string, string>, identity: unknown): void {
    if (this.#unmounting) {
      ws.terminate();
      return;
    }
    this.#upgradesAccepted++;
    const info: ConnectionInfo = {
      id: randomUUID(),
      channel: entry.route.pattern,
      pluginId: entry.runtime.pluginId,
      path,
      params,
      query,
      headers: this.#pickHeaders(request),
      ...(request.socket.remoteAddress ? { remoteAddress: request.socket.remoteAddress } : {}),
      ...(identity !== undefined ? { identity } : {}),
      connectedAt: Date.now(),
    };
    let context: ContextDescriptor;
    try {
      const extra = typeof this.#options.context === 'function' ? this.#options.context(info, request) : (this.#options.context ?? {});
      const { id, channel, path: p, params: pa, query: q, headers, remoteAddress } = info;
      context = {
        ...(extra as ContextDescriptor),
        host: {
          kind: 'ws',
          connection: { id, channel, path: p, params: pa, query: q, headers, ...(remoteAddress ? { remoteAddress } : {}) },
          ...(identity !== undefined ? { identity } : {}),
        },
      };
    } catch (error) {
      this.#reportError(error, { phase: 'context', channel: info.channel, connectionId: info.id });
      ws.close(1011, 'context');
      return;
    }
    const session = new ChannelSession(ws, info, context, entry.runtime);
    this.#sessions.add(session);
    void session.done.then(() => this.#sessions.delete(session));
    try {
      session.start();
    } catch (error) {
      this.#reportError(error, { phase: 'connect', channel: info.channel, connectionId: info.id });
      ws.terminate();
    }
  }

  #pickHeaders(request: IncomingMessage): Record<string, string> {
    const headers: Record<string, string> = {};
    for (const name of this.#allowedHeaders) {
      const value = request.headers[name];
      if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : value;
    }
    return headers;
  }

  #reportError(error: unknown, info: ChannelErrorInfo): void {
    try {
      this.#options.onError?.(error, info);
    } catch {
      // A host hook that throws must not take the connection down.
    }
  }

  stats(): ChannelMountStats {
    return {
      connections: this.#sessions.size,
      upgradesAccepted: this.#upgradesAccepted,
      upgradesRejected: { ...this.#upgradesRejected },
      ...this.#counters,
    };
  }

  unmount(options: UnmountOptions = {}): Promise<void> {
    this.#unmounting ??= this.#unmount(options.timeoutMs ?? DEFAULTS.unmountTimeoutMs);
    return this.#unmounting;
  }

  async #unmount(timeoutMs: number): Promise<void> {
    this.#router.detach(this);
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    this.#heartbeat = undefined;
    for (const cancel of [...this.#pending]) cancel(503);
    const sessions = [...this.#sessions];
    for (const session of sessions) session.closeFor('unmount', 1001, 'server shutting down');
    const closeTimeoutMs = this.#options.closeTimeoutMs ?? DEFAULTS.closeTimeoutMs;
    if (!(await settlesWithin(Promise.all(sessions.map((s) => s.closed)), closeTimeoutMs))) {
      // Clients that do not answer the close handshake lose their socket now, not after ws's 30 s.
      for (const session of sessions) if (!session.isSocketClosed) session.terminate('unmount');
      await Promise.all(sessions.map((s) => s.closed));
    }
    if (!(await settlesWithin(Promise.all(sessions.map((s) => s.done)), timeoutMs))) {
      for (const session of sessions) session.hardStop();
      await Promise.all(sessions.map((s) => s.done));
    }
    for (const entry of this.#entries) entry.wss.close();
    this.#restoreBackend?.();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.unmount();
  }

  /**
   * Unmount before the backend shuts down, so that connections get 1001 and disconnect handlers
   * still run. Done by wrapping the instance's shutdown(), which needs nothing from the backend
   * beyond IExecutionBackend; a frozen backend cannot be wrapped and the host must unmount itself.
   */
  #hookBackendShutdown(): void {
    const backend = this.#backend as IExecutionBackend & { shutdown: IExecutionBackend['shutdown'] };
    const original = backend.shutdown;
    const hadOwn = Object.hasOwn(backend, 'shutdown');
    const mount = this;
    const wrapper = async function shutdown(this: unknown, options?: ShutdownOptions): Promise<void> {
      await mount.unmount(options?.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs });
      return original.call(backend, options);
    };
    try {
      Object.defineProperty(backend, 'shutdown', { value: wrapper, configurable: true, writable: true, enumerable: false });
    } catch {
      return;
    }
    this.#restoreBackend = () => {
      // Only if nobody wrapped it after us; otherwise our wrapper stays in the chain as a pass-through.
      if (backend.shutdown !== wrapper) return;
      if (hadOwn) Object.defineProperty(backend, 'shutdown', { value: original, configurable: true, writable: true, enumerable: false });
      else delete (backend as { shutdown?: unknown }).shutdown;
    };
  }
}

function isRegisteredPlugin(value: unknown): value is RegisteredPlugin {
  return typeof value === 'object' && value !== null && 'manifest' in value && 'root' in value && typeof (value as { manifest: unknown }).manifest === 'object';
}

/** Normalise what `authenticate` returned; identity is copied through JSON so it is plain data. */
function readVerdict(result: AuthenticateResult): { status?: number; message?: string; identity?: unknown } {
  if (result === true) return {};
  if (result === false || result === null || result === undefined || typeof result !== 'object') return { status: 401 };
  if (result.allow === true) {
    return result.identity === undefined ? {} : { identity: JSON.parse(JSON.stringify(result.identity)) as unknown };
  }
  const status = result.status === 403 ? 403 : 401;
  return { status, ...(typeof result.message === 'string' ? { message: result.message } : {}) };
}

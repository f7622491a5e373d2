import type { IncomingMessage, Server as HttpServer } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import { ShuttingDownError, ValidationError, type ContextDescriptor, type PluginManifest } from '@kb-labs/plugin-execution-core';
import { clearInterval, monotonicNow, setInterval, setTimeout, settlesWithin, whenRejected } from '@kb-labs/plugin-execution-core/host-kit';
import type { WebSocket } from 'ws';
import { authenticateUpgrade, type UpgradeVerdict } from './authenticate.js';
import { ChannelSession } from './channel-session.js';
import { connectionContext, describeConnection } from './connection-context.js';
import type { ChannelMount, ChannelMountStats } from './channel-mount.js';
import { ConnectionRegistry } from './connection-registry.js';
import { mountedManifest, type ManifestSource } from './mount-manifest.js';
import { mountChannels, safeFormatError, type ChannelEntry, type MountedChannel } from './mounted-channel.js';
import { DEFAULTS, validateOptions, type ChannelErrorInfo, type MountWebSocketChannelsOptions, type UnmountOptions } from './options.js';
import { matchRoute, normaliseBasePath, type Route } from './route.js';
import { createMountCounters } from './session-runtime.js';
import { handshakeRefusal } from './handshake-check.js';
import { checkUnmountOptions } from './unmount-options.js';
import { UpgradeRouter, rejectUpgrade, type UpgradeServer, type UpgradeTarget } from './upgrade-router.js';

export type { MountedChannel } from './mounted-channel.js';
export type { ChannelMount, ChannelMountStats } from './channel-mount.js';

/**
 * Serve the channels a plugin manifest declares on `server`'s WebSocket upgrades, running their
 * handler on `options.backend` (any backend). The backend's shutdown unmounts it first (see
 * ChannelMount). Throws ValidationError for a bad manifest, bad options, a manifest without
 * channels, or a path already mounted on this server.
 */
export function mountWebSocketChannels(server: HttpServer | HttpsServer | UpgradeServer, manifest: ManifestSource, options: MountWebSocketChannelsOptions): ChannelMount {
  if (typeof (server as { on?: unknown } | null)?.on !== 'function') {
    throw new ValidationError(`mountWebSocketChannels() needs an http or https server (with .on('upgrade')), got ${server === null ? 'null' : typeof server}`, { details: { path: 'server' } });
  }
  const validated = validateOptions(options);
  if (isShutDown(validated.backend)) {
    throw new ShuttingDownError(`Cannot mount channels on a backend that is shut down (its ${validated.backend.type} backend takes no executions)`);
  }
  const parsed = mountedManifest(manifest);
  if (!parsed.channels || parsed.channels.length === 0) {
    throw new ValidationError(`Plugin "${parsed.id}" declares no "channels" to mount`, { details: { pluginId: parsed.id } });
  }
  return new WebSocketChannelMount(server as UpgradeServer, parsed, validated);
}

/** One upgrade request that matched a channel of this mount. */
interface ChannelUpgrade {
  entry: ChannelEntry;
  request: IncomingMessage;
  socket: Duplex;
  head: Buffer;
  path: string;
  params: Record<string, string>;
  query: Record<string, string>;
}

class WebSocketChannelMount implements ChannelMount, UpgradeTarget {
  readonly registry: ConnectionRegistry;
  readonly channels: readonly MountedChannel[];
  readonly basePath: string;
  readonly routes: readonly Route[];
  readonly #entries: readonly ChannelEntry[];
  readonly #options: MountWebSocketChannelsOptions;
  readonly #router: UpgradeRouter;
  readonly #sessions = new Set<ChannelSession>();
  /** Sessions whose socket has closed while their messages or disconnect handler still run. */
  #closing = 0;
  /** Upgrades waiting for `authenticate`; unmount answers them 503 at once. */
  readonly #pending = new Set<(status: number) => void>();
  /** Upgrades whose client left while `authenticate` still runs: bounded with the closing connections. */
  readonly #departed = new Set<(status: number) => void>();
  /** Sockets closed because the host's `context` threw, until their client answers the close: bounded with the closing connections, ended by unmount. */
  readonly #refused = new Set<WebSocket>();
  readonly #allowedHeaders: readonly string[];
  readonly #counters = createMountCounters();
  /** Without `onError`: the phase and error code of each kind of failure already warned about. */
  readonly #warned = new Set<string>();
  #upgradesAccepted = 0;
  readonly #upgradesRejected: Record<string, number> = {};
  #heartbeat: NodeJS.Timeout | undefined;
  #unmounting: Promise<void> | undefined;
  readonly #stopFollowingBackend: () => void;

  constructor(server: UpgradeServer, manifest: PluginManifest, options: MountWebSocketChannelsOptions) {
    this.#options = options;
    this.registry = options.connectionRegistry ?? new ConnectionRegistry();
    this.#allowedHeaders = (options.allowedHeaders ?? DEFAULTS.allowedHeaders).map((h) => h.toLowerCase());
    try {
      this.basePath = normaliseBasePath(options.basePath ?? DEFAULTS.basePath);
    } catch (error) {
      throw new ValidationError((error as Error).message, { details: { basePath: options.basePath } });
    }
    this.#entries = mountChannels(manifest, this.basePath, options, {
      backend: options.backend,
      registry: this.registry,
      counters: this.#counters,
      sendReady: options.sendReady ?? DEFAULTS.sendReady,
      abortOnClose: options.abortOnClose ?? DEFAULTS.abortOnClose,
      closeTimeoutMs: options.closeTimeoutMs ?? DEFAULTS.closeTimeoutMs,
      formatError: safeFormatError(options),
      reportError: (error, info) => this.#reportError(error, info),
      onLog: options.onLog,
      onEvent: options.onEvent,
    });
    this.channels = this.#entries.map((e) => e.mounted);
    this.routes = this.#entries.map((e) => e.route);
    this.#router = UpgradeRouter.attach(server, this);
    // The backend's shutdown closes the mount first, while disconnect handlers can still run.
    this.#stopFollowingBackend = options.backend.onShutdown(({ timeoutMs }) => this.unmount({ timeoutMs }));
    const interval = options.heartbeatIntervalMs ?? DEFAULTS.heartbeatIntervalMs;
    if (interval > 0) {
      this.#heartbeat = setInterval(() => {
        for (const session of this.#sessions) session.heartbeat();
      }, interval);
      this.#heartbeat.unref();
    }
  }

  /** Its server closed: unmounted, so that its backend holds it no longer (a failure is unmount()'s to return). */
  serverClosed(): void {
    this.unmount().catch(noop);
  }

  get unmounted(): boolean {
    return this.#unmounting !== undefined;
  }

  tryAccept(request: IncomingMessage, socket: Duplex, head: Buffer, pathname: string, search: string): boolean {
    for (const entry of this.#entries) {
      const params = matchRoute(entry.route, pathname);
      if (params) {
        const query = Object.fromEntries(new URLSearchParams(search));
        void this.#accept({ entry, request, socket, head, path: pathname, params, query });
        return true;
      }
    }
    return false;
  }

  async #accept(upgrade: ChannelUpgrade): Promise<void> {
    const { entry, request, socket, head } = upgrade;
    let upgraded = false;
    try {
      const bogus = handshakeRefusal(request);
      if (bogus) return this.#reject(socket, bogus.status, bogus.message, bogus.headers);
      const verdict = await this.#admit(upgrade);
      // Refused with 503 too when an unmount began meanwhile (not sent a 101 and then cut off).
      if (verdict.status !== undefined || this.#unmounting) return this.#reject(socket, verdict.status ?? 503, verdict.message);
      if (socket.destroyed) return;
      entry.wss.handleUpgrade(request, socket, head, (ws) => {
        upgraded = true;
        this.#open(upgrade, ws, verdict.identity);
      });
    } catch (error) {
      // Nothing may escape into an unhandled rejection; before the handshake the client gets a 500.
      this.#reportError(error, { phase: 'upgrade', channel: entry.route.pattern });
      if (!upgraded) this.#reject(socket, 500);
      else socket.destroy();
    }
  }

  /** Whether the upgrade may proceed: capacity, then the host's `authenticate`, then the channel's `auth`. */
  async #admit({ entry, request, socket, path, params, query }: ChannelUpgrade): Promise<UpgradeVerdict> {
    if (this.#unmounting || this.#atCapacity()) return { status: 503 };
    const hook = this.#options.authenticate;
    const verdict = hook
      ? await authenticateUpgrade({
          hook,
          request,
          socket,
          info: { channel: entry.route.pattern, path, params, query },
          timeoutMs: this.#options.authenticateTimeoutMs ?? DEFAULTS.authenticateTimeoutMs,
          pending: this.#pending,
          departed: this.#departed,
          reportError: (error, info) => this.#reportError(error, info),
        })
      : {};
    if (verdict.status === undefined && entry.mounted.auth === 'required' && (verdict.identity == null || verdict.identity === false)) {
      // `identity: lookup(token) ?? false`: a lookup that found no one, as null would say.
      return { status: 401, message: 'This channel requires authentication' };
    }
    return verdict;
  }

  /**
   * `maxConnections` counts the connections a client can see: connecting (in `authenticate`) or
   * open. One that has closed no longer counts (a client reconnecting after a drop is not refused
   * while its old connection's disconnect handler still runs), but what it still runs is the
   * host's work: the mount keeps at most twice `maxConnections` connections alive in all, so that
   * clients that connect and leave at once cannot pile up executions without bound.
   */
  #atCapacity(): boolean {
    const maxConnections = this.#options.maxConnections ?? DEFAULTS.maxConnections;
    const alive = this.#sessions.size + this.#pending.size + this.#departed.size + this.#refused.size;
    return alive - this.#closing - this.#departed.size - this.#refused.size >= maxConnections || alive >= 2 * maxConnections;
  }

  #reject(socket: Duplex, status: number, message?: string, headers?: Record<string, string>): void {
    this.#upgradesRejected[status] = (this.#upgradesRejected[status] ?? 0) + 1;
    rejectUpgrade(socket, status, message, headers);
  }

  #open({ entry, request, socket, path, params, query }: ChannelUpgrade, ws: WebSocket, identity: unknown): void {
    // ws reports a client's protocol violation (oversize frame → 1009, bad UTF-8 → 1007, an
    // unmasked frame) as 'error', then closes: without a listener that error would crash the host,
    // whatever becomes of the connection (one whose context throws is closed, but still reads).
    ws.on('error', noop);
    if (this.#unmounting) {
      ws.terminate();
      return;
    }
    this.#upgradesAccepted++;
    const { runtime } = entry;
    const info = describeConnection({ channel: entry.route.pattern, pluginId: runtime.pluginId, path, params, query }, request, this.#allowedHeaders, identity);
    let context: ContextDescriptor;
    try {
      context = connectionContext(info, request, this.#options.context);
    } catch (error) {
      this.#refuse(ws);
      this.#reportError(error, { phase: 'context', channel: info.channel, connectionId: info.id });
      return;
    }
    const session = new ChannelSession(ws, info, context, runtime);
    this.#sessions.add(session);
    // Closing from the moment either side began to close it: no longer a connection a client can see.
    void session.closing.then(() => this.#closing++);
    void session.done.then(() => {
      this.#sessions.delete(session);
      this.#closing--;
    });
    try {
      session.start(socket);
    } catch (error) {
      this.#reportError(error, { phase: 'connect', channel: info.channel, connectionId: info.id });
      ws.terminate();
    }
  }

  /** Close with 1011 (before the failure is reported: an onError that unmounts ends it too); a client that does not answer the close loses its socket after closeTimeoutMs, not after ws's 30 s. */
  #refuse(ws: WebSocket): void {
    this.#refused.add(ws);
    ws.once('close', () => this.#refused.delete(ws));
    ws.close(1011, 'context');
    setTimeout(() => ws.terminate(), this.#options.closeTimeoutMs ?? DEFAULTS.closeTimeoutMs).unref();
  }

  #reportError(error: unknown, info: ChannelErrorInfo): void {
    if (!this.#options.onError) return this.#warnOnce(error, info);
    // A host hook that throws must not take the connection down, nor silence what it was told.
    const failed = (hookError: unknown) => this.#onErrorFailed(hookError, error, info);
    try {
      const returned: unknown = this.#options.onError(error, info);
      // An async hook's rejection is taken as a throw is, not left unhandled.
      whenRejected(returned, failed);
    } catch (hookError) {
      failed(hookError);
    }
  }

  /** `onError` threw or rejected: said once, and what it was given is warned of as without one (a bug in an error sink should not hide every failure). */
  #onErrorFailed(hookError: unknown, error: unknown, info: ChannelErrorInfo): void {
    if (!this.#warned.has('onError')) {
      this.#warned.add('onError');
      let what: string;
      try {
        what = hookError instanceof Error ? `${hookError.name}: ${hookError.message}` : String(hookError);
      } catch {
        what = 'a value that cannot be shown';
      }
      process.emitWarning(`The onError hook given to mountWebSocketChannels() threw or rejected (${what.slice(0, 500)}); the failures it is given are also warned of here (once per phase and error code). Said once per mount.`, {
        code: 'KB_PLUGIN_CALLBACK_FAILED',
      });
    }
    this.#warnOnce(error, info);
  }

  /**
   * No `onError`: a failure the host would otherwise never hear of (a plugin not registered on the
   * backend closes every connection with 1011) is said once per phase and error code, as a
   * process warning.
   */
  #warnOnce(error: unknown, info: ChannelErrorInfo): void {
    const code = String((error as { code?: unknown } | null)?.code ?? (error as Error | null)?.name ?? 'Error');
    const kind = `${info.phase}:${code}`;
    if (this.#warned.has(kind)) return;
    this.#warned.add(kind);
    const message = String((error as Error | null)?.message ?? error);
    process.emitWarning(
      `Channel ${info.channel ?? '(none)'}, ${info.phase}: ${code}: ${message} (said once per phase and error code; ${this.#options.onError ? 'the onError hook given failed' : 'pass onError to mountWebSocketChannels() to see each one'})`,
      { code: 'KB_PLUGIN_CHANNEL_ERROR' },
    );
  }

  stats(): ChannelMountStats {
    return {
      connections: this.#sessions.size + this.#refused.size,
      authenticating: this.#pending.size,
      closingConnections: this.#closing + this.#refused.size,
      upgradesAccepted: this.#upgradesAccepted,
      upgradesRejected: { ...this.#upgradesRejected },
      ...this.#counters,
    };
  }

  unmount(options?: UnmountOptions): Promise<void> {
    // Checked on every call, as shutdown()'s are: a mistake is said whether or not an unmount already runs.
    let timeoutMs: number;
    try {
      ({ timeoutMs } = checkUnmountOptions(options));
    } catch (error) {
      return Promise.reject(error);
    }
    this.#unmounting ??= this.#unmount(timeoutMs);
    return this.#unmounting;
  }

  async #unmount(timeoutMs: number): Promise<void> {
    // Still following the backend until done: a backend.shutdown() called meanwhile waits for this
    // unmount (its onShutdown listener gets it back) before it stops taking the disconnects' work.
    try {
      await this.#closeAll(timeoutMs);
    } finally {
      this.#stopFollowingBackend();
    }
  }

  async #closeAll(timeoutMs: number): Promise<void> {
    this.#router.detach(this);
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    this.#heartbeat = undefined;
    for (const cancel of [...this.#pending, ...this.#departed]) cancel(503);
    for (const ws of this.#refused) ws.terminate();
    // Ended: no longer connections, though their sockets' 'close' comes a turn later.
    this.#refused.clear();
    const sessions = [...this.#sessions];
    for (const session of sessions) session.closeFor('unmount', 1001, 'server shutting down');
    // All of it within `timeoutMs` (a backend's shutdown stops waiting for its unmount then), half
    // of it at most for the close: the disconnect handlers that follow run on the live backend.
    const started = monotonicNow();
    const closeTimeoutMs = Math.min(this.#options.closeTimeoutMs ?? DEFAULTS.closeTimeoutMs, Math.floor(timeoutMs / 2));
    if (!(await settlesWithin(Promise.all(sessions.map((s) => s.closed)), closeTimeoutMs))) {
      // Clients that do not answer the close handshake lose their socket now, not after ws's 30 s (the cause, if any, is closeFor's).
      for (const session of sessions) if (!session.isSocketClosed) session.terminate();
      await Promise.all(sessions.map((s) => s.closed));
    }
    const left = Math.max(0, timeoutMs - (monotonicNow() - started));
    if (!(await settlesWithin(Promise.all(sessions.map((s) => s.done)), left))) {
      for (const session of sessions) session.hardStop();
      await Promise.all(sessions.map((s) => s.done));
    }
    for (const entry of this.#entries) entry.wss.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.unmount();
  }
}

/**
 * Whether `backend.shutdown()` has begun: a listener added after that runs before onShutdown()
 * returns (its contract), where a live backend keeps it for later (and it is removed at once).
 */
function isShutDown(backend: MountWebSocketChannelsOptions['backend']): boolean {
  let ran = false;
  backend.onShutdown(() => {
    ran = true;
  })();
  return ran;
}

function noop(): void {}

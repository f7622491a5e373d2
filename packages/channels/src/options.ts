import type { IncomingMessage } from 'node:http';
import { ValidationError, type ContextDescriptor, type ExecutionError, type ExecutionEvent, type IExecutionBackend, type LogEntry } from '@kb-labs/plugin-execution-core';
import { checkContextDescriptor, lazySchema, option, parseOptions } from '@kb-labs/plugin-execution-core/host-kit';
import type { ConnectionInfo, ConnectionRegistry } from './connection-registry.js';

/** What `authenticate` is told about the upgrade besides the raw request. */
export interface UpgradeInfo {
  /** The mounted channel pattern, e.g. "/ws/chat". */
  channel: string;
  path: string;
  params: Record<string, string>;
  query: Record<string, string>;
}

/**
 * The verdict of `authenticate`.
 * - `true`, or `{ allow: true, identity? }`: accept; `identity` (JSON-serialisable) goes to
 *   `ctx.context.host.identity` and `ConnectionInfo.identity`.
 * - `false`, `null`, `undefined`, or `{ allow: false, status?, message? }`: refuse before the
 *   handshake with HTTP `status` (an error status, 400-599: 401 or 403, 429 for a client over its
 *   rate; default 401). Forgetting to return refuses.
 * - Anything else (`{ allowed: true }`, a status that is no error) is refused with 500 and named
 *   to `onError` (`phase: 'authenticate'`).
 */
export type AuthenticateResult =
  | boolean
  | null
  | undefined
  | { allow: true; identity?: unknown }
  | { allow: false; status?: number; message?: string };

/**
 * A connection's context descriptor fields, bar `host` (the channel's). Not `Omit<…, 'host'>`:
 * over a type with an index signature that keeps only the signature, and every field would
 * type-check as `unknown` (`requestId: 42` compiled, then the mount refused it).
 */
export type ConnectionContextFields = { [K in keyof ContextDescriptor as K extends 'host' ? never : K]: ContextDescriptor[K] } & { host?: never };

/** Where something went wrong, for `onError`. */
export type ChannelErrorPhase = 'upgrade' | 'authenticate' | 'context' | 'connect' | 'message' | 'disconnect' | 'send';

export interface ChannelErrorInfo {
  phase: ChannelErrorPhase;
  channel?: string;
  connectionId?: string;
}

export interface MountWebSocketChannelsOptions {
  /** The backend that runs the channel handlers; the plugin must be registered on it. */
  backend: IExecutionBackend;
  /** Where connections are registered; share one to push to channels from the host. @default a new ConnectionRegistry (see `mount.registry`) */
  connectionRegistry?: ConnectionRegistry | undefined;
  /**
   * Prefix of every channel path, e.g. "/ws" mounts a "/chat" channel at "/ws/chat". Upgrade requests
   * under it that match no channel get 404. Requests outside it are left to other 'upgrade'
   * listeners (or get 404 when there is none, rather than hanging).
   * @default "" (channels at their manifest paths)
   */
  basePath?: string | undefined;
  /**
   * Runs on every upgrade before the WebSocket handshake; its refusal answers 401/403 over plain HTTP.
   * A hook that throws answers 500 (and reaches `onError`). Channels whose manifest says
   * `auth: "required"` also need an `identity` in the verdict.
   * @default undefined (every upgrade is accepted; "required" channels refuse all)
   */
  authenticate?: ((request: IncomingMessage, info: UpgradeInfo) => AuthenticateResult | Promise<AuthenticateResult>) | undefined;
  /** How long `authenticate` may take before the upgrade is answered 503. @default 10000 */
  authenticateTimeoutMs?: number | undefined;
  /**
   * Extra context descriptor fields for the executions of a connection (tenantId, permissions,
   * config …), or a function computing them once per connection. `host` is always set by the mounter.
   * @default {}
   */
  context?: (ConnectionContextFields | ((connection: ConnectionInfo, request: IncomingMessage) => ConnectionContextFields)) | undefined;
  /**
   * Largest accepted client frame in bytes; bigger closes with 1009. A manifest's `maxPayload` may
   * lower it for its channel, never raise it: the host's figure is a ceiling. @default 1048576 (1 MiB)
   */
  maxPayload?: number | undefined;
  /** Messages of one connection handled at once when the manifest gives no `concurrency`; 1 keeps them in order. @default 1 */
  concurrencyPerConnection?: number | undefined;
  /** Messages of one connection running or waiting (a ceiling a manifest's `maxInFlight` may only lower); one more gets a QUEUE_FULL error frame. @default 16 */
  maxInFlightPerConnection?: number | undefined;
  /** Time limit of each execution when the manifest's channel gives none. @default the handler's `timeoutMs`, else the backend's default */
  timeoutMs?: number | undefined;
  /** Ping interval; a peer that has not answered the previous ping is terminated. 0 disables. @default 30000 */
  heartbeatIntervalMs?: number | undefined;
  /** A connection whose unsent bytes would pass this is terminated (a client that does not read). @default 4194304 (4 MiB) */
  maxBufferedBytes?: number | undefined;
  /**
   * Connections open (or in `authenticate`) across this mount's channels; more upgrades get 503.
   * A connection that has closed stops counting at once, though messages it sent or its disconnect
   * handler may still run (a client that reconnects is not refused meanwhile); those are bounded
   * too: with twice this many connections alive in all, open or closing, upgrades also get 503.
   * @default Infinity
   */
  maxConnections?: number | undefined;
  /** Request headers copied into the connection descriptor (lower-case names). @default ["origin", "user-agent"] */
  allowedHeaders?: readonly string[] | undefined;
  /**
   * Whenever the server closes a connection (unmount's 1001, a connect handler's refusal,
   * `ctx.channel.close()`, a `context` that threw), how long its client gets to answer the close
   * before its socket is destroyed. @default 1000
   */
  closeTimeoutMs?: number | undefined;
  /** Send `{ type: 'ready', connectionId }` once the connect handler accepted. @default true */
  sendReady?: boolean | undefined;
  /**
   * When a client disconnects, abort its running executions and drop its queued messages.
   * Off, messages received before the close still run (their replies are dropped).
   * @default false
   */
  abortOnClose?: boolean | undefined;
  /**
   * Turns a failed execution into what the error frame says. The default passes code and message for
   * client-caused codes (HANDLER_ERROR, VALIDATION_ERROR, PERMISSION_DENIED, TIMEOUT, QUEUE_FULL,
   * ABORTED, SHUTTING_DOWN) and hides the message of server-side ones, which can name server paths.
   * @default see above
   */
  formatError?: ((error: ExecutionError, info: ChannelErrorInfo) => { code: string; message: string }) | undefined;
  /**
   * Told about failed executions, throwing hooks and unsendable replies. Not awaited; what it
   * throws, or the rejection of the promise it returns, is ignored. Without it, the first failure
   * of each phase and error code is a process warning (`KB_PLUGIN_CHANNEL_ERROR`).
   * @default undefined
   */
  onError?: ((error: unknown, info: ChannelErrorInfo) => void) | undefined;
  /** Receives the handlers' `ctx.logger` lines. @default undefined */
  onLog?: ((entry: LogEntry, connection: ConnectionInfo) => void) | undefined;
  /** Receives the handlers' `ctx.emit()` events. @default undefined */
  onEvent?: ((event: ExecutionEvent, connection: ConnectionInfo) => void) | undefined;
}

export interface UnmountOptions {
  /** How long running executions and disconnect handlers may take before they are aborted: a whole number of ms from 0 to 2147483647. @default 5000 */
  timeoutMs?: number | undefined;
}

export const DEFAULTS = {
  basePath: '',
  authenticateTimeoutMs: 10_000,
  maxPayload: 1024 * 1024,
  concurrencyPerConnection: 1,
  maxInFlightPerConnection: 16,
  heartbeatIntervalMs: 30_000,
  maxBufferedBytes: 4 * 1024 * 1024,
  maxConnections: Number.POSITIVE_INFINITY,
  allowedHeaders: ['origin', 'user-agent'] as readonly string[],
  closeTimeoutMs: 1000,
  sendReady: true,
  abortOnClose: false,
  unmountTimeoutMs: 5000,
} as const;

const isBackend = (v: unknown): v is IExecutionBackend =>
  typeof v === 'object' && v !== null && ['execute', 'shutdown', 'onShutdown'].every((m) => typeof (v as Record<string, unknown>)[m] === 'function');
const isRegistry = (v: unknown): v is ConnectionRegistry =>
  typeof v === 'object' && v !== null && typeof (v as ConnectionRegistry).register === 'function' && typeof (v as ConnectionRegistry).broadcast === 'function';

/** Every option of the mount; validated like every backend's options (unknown ones refused, with the nearest name). */
const mountOptionsSchema = lazySchema((z) =>
  z.object({
    backend: z.custom<IExecutionBackend>(isBackend, { error: 'must be an execution backend (with execute(), shutdown() and onShutdown())' }),
    connectionRegistry: z.custom<ConnectionRegistry>(isRegistry, { error: 'must be a ConnectionRegistry' }).optional(),
    basePath: z.string({ error: 'must be a string' }).optional(),
    authenticate: option.fn().optional(),
    formatError: option.fn().optional(),
    onError: option.fn().optional(),
    onLog: option.fn().optional(),
    onEvent: option.fn().optional(),
    context: z
      .union([option.fn(), z.record(z.string(), z.unknown())], { error: 'must be an object or a function' })
      .optional(),
    authenticateTimeoutMs: option.int(1).optional(),
    maxPayload: option.int(1, 100 * 1024 * 1024).optional(),
    concurrencyPerConnection: option.int(1, 1024).optional(),
    maxInFlightPerConnection: option.int(1, 100_000).optional(),
    timeoutMs: option.int(1).optional(),
    heartbeatIntervalMs: option.int(0).optional(),
    maxBufferedBytes: option.int(1, Number.MAX_SAFE_INTEGER).optional(),
    closeTimeoutMs: option.int(0).optional(),
    maxConnections: z.union([option.int(1, Number.MAX_SAFE_INTEGER), z.literal(Number.POSITIVE_INFINITY)], { error: 'must be an integer of at least 1, or Infinity' }).optional(),
    allowedHeaders: z.array(z.string(), { error: 'must be an array of header names' }).optional(),
    sendReady: option.boolean().optional(),
    abortOnClose: option.boolean().optional(),
  }),
);

/** Check the options and name every problem (VALIDATION_ERROR). */
export function validateOptions(options: unknown): MountWebSocketChannelsOptions {
  if (typeof options !== 'object' || options === null) {
    throw new ValidationError('mountWebSocketChannels() needs an options object with a backend');
  }
  // The parse checks; the host's own objects (backend, callbacks, context) are used as given.
  parseOptions(mountOptionsSchema(), options, 'mountWebSocketChannels() options');
  const { context } = options as MountWebSocketChannelsOptions;
  // Given once for every execution: refused now, not by each message alike.
  if (context !== undefined && typeof context !== 'function') checkHostContext(context);
  return options as MountWebSocketChannelsOptions;
}

/** Codes whose message is the client's or the plugin's business, safe to show the client. */
const CLIENT_VISIBLE = new Set(['HANDLER_ERROR', 'VALIDATION_ERROR', 'PERMISSION_DENIED', 'TIMEOUT', 'QUEUE_FULL', 'ABORTED', 'SHUTTING_DOWN']);
const MAX_ERROR_MESSAGE = 1024;

export function defaultFormatError(error: ExecutionError): { code: string; message: string } {
  if (!CLIENT_VISIBLE.has(error.code)) return { code: error.code, message: 'The server could not run this channel handler' };
  const message = error.message.length > MAX_ERROR_MESSAGE ? `${error.message.slice(0, MAX_ERROR_MESSAGE)}…` : error.message;
  return { code: error.code, message };
}

/**
 * The fields a host adds to its connections' context (the `context` option, or what its function
 * returns): what an execution's context may hold, without `host`, which the channel sets.
 */
export function checkHostContext(context: unknown): void {
  if (typeof context === 'object' && context !== null && Object.hasOwn(context, 'host')) {
    const message = "is set by the channel for each connection ({ kind: 'ws', connection, identity }); give a field of your own another name";
    throw new ValidationError(`Invalid context: context.host ${message}`, { details: { issues: [{ path: 'context.host', message }] } });
  }
  checkContextDescriptor(context, 'context');
}

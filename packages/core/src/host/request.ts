import type { z } from 'zod';
import { ValidationError } from '../errors.js';
import { issuesOf, validationError, type ValidationIssue } from '../validation.js';
import { MAX_TIMER_MS } from './deadlines.js';
import { lazySchema, type Zod } from './lazy-zod.js';
import { parseTraceparent } from './traceparent.js';
import type { HostPlatform } from '../define-handler.js';
import { unsafeExecutionIdReason } from './workspace-manager.js';
import { contextDescriptorSchema, keepProtoKeys } from './context-descriptor.js';
import { didYouMean, nearest, unknownKeyMessage } from './nearest-name.js';
import { BACKEND_OPTION_NAMES, executeKeyElsewhere } from './backend-own-options.js';
import { EXECUTE_OPTIONS, REQUEST_FIELDS } from './request-fields.js';

export { contextDescriptorSchema, type ContextDescriptor } from './context-descriptor.js';

/** A plugin or handler id in a request: a non-empty string of at most `max` characters. */
function idText(z: Zod, max: number) {
  return z
    .string({ error: (issue) => (issue.input === undefined ? 'is required' : 'must be a string') })
    .min(1, { error: 'must not be empty' })
    .max(max, { error: `must be at most ${max} characters` });
}

export const executionRequestSchema = lazySchema((z) =>
  z.object(
    {
      pluginId: idText(z, 214),
      handlerId: idText(z, 128),
      input: z.unknown().optional(),
      context: contextDescriptorSchema().optional(),
      /**
       * Optional host-chosen id (used for the workspace directory name, logs and spans); a UUID
       * otherwise. One execution at a time may have it on a backend: another execute() with it
       * before that one finished is VALIDATION_ERROR (a queue's stream refuses it for 2 minutes).
       */
      executionId: z
        .string({ error: 'must be a string' })
        .superRefine((id, ctx) => {
          const reason = unsafeExecutionIdReason(id);
          if (reason) ctx.addIssue({ code: 'custom', message: `unsafe id: ${reason}` });
        })
        .optional(),
    },
    { error: 'must be an object: { pluginId, handlerId, input?, context?, executionId? }' },
  ),
);

type RequestInput = z.input<ReturnType<typeof executionRequestSchema>>;
type ContextInput = NonNullable<RequestInput['context']>;

/**
 * What `execute()` takes. `context.permissions` may be left out (the backend's grant) but not
 * given as undefined, which is refused (a tenant's missing grant would run under the backend's
 * wider one): under `exactOptionalPropertyTypes` that does not compile either.
 */
export type ExecutionRequest = Omit<RequestInput, 'context'> & {
  context?: (Omit<ContextInput, 'permissions'> & { permissions?: Exclude<ContextInput['permissions'], undefined> }) | undefined;
};
export type ParsedExecutionRequest = z.output<ReturnType<typeof executionRequestSchema>>;

/**
 * Validate a request. The common shape — two ids within their limits and an input, with a safe
 * execution id of the host's or none, and an empty context or none (what a queue worker passes
 * on) — is checked by hand (what the schema would check of it, without its cost on every
 * execution); anything else goes through executionRequestSchema(), whose errors name each path.
 */
export function parseExecutionRequest(request: unknown): ParsedExecutionRequest {
  if (typeof request === 'object' && request !== null && !Array.isArray(request)) {
    const r = request as Record<string, unknown>;
    const { pluginId, handlerId, executionId, context } = r;
    if (
      onlyRequestFields(r) &&
      typeof pluginId === 'string' &&
      pluginId.length >= 1 &&
      pluginId.length <= 214 &&
      typeof handlerId === 'string' &&
      handlerId.length >= 1 &&
      handlerId.length <= 128 &&
      (executionId === undefined || (typeof executionId === 'string' && unsafeExecutionIdReason(executionId) === undefined)) &&
      (context === undefined || isEmptyObject(context))
    ) {
      const parsed: ParsedExecutionRequest = { pluginId, handlerId, input: r.input };
      if (executionId !== undefined) parsed.executionId = executionId as string;
      if (context !== undefined) parsed.context = {};
      return parsed;
    }
  }
  const unknown = typeof request === 'object' && request !== null && !Array.isArray(request) ? unknownFieldIssues(request as Record<string, unknown>) : [];
  const result = executionRequestSchema().safeParse(request);
  if (result.success && unknown.length === 0) {
    keepProtoKeys((request as Record<string, unknown>).context, result.data.context);
    return result.data;
  }
  throw validationError('Invalid execution request', [...(result.success ? [] : issuesOf(result.error, '', executionRequestSchema())), ...unknown]);
}


function onlyRequestFields(r: Record<string, unknown>): boolean {
  for (const key in r) if (!REQUEST_FIELDS.has(key)) return false;
  return true;
}

/**
 * A misspelt field is not dropped in silence (`inptu` would run the handler without its input),
 * and an execute() option put in the request (`timeoutMs`) is pointed to where it goes.
 */
function unknownFieldIssues(r: Record<string, unknown>): ValidationIssue[] {
  const issues: ValidationIssue[] = [];
  for (const key of Object.keys(r)) {
    if (REQUEST_FIELDS.has(key)) continue;
    if (EXECUTE_OPTIONS.includes(key)) issues.push({ path: key, message: "not a field of the request: it is an option of execute() (its second argument)" });
    else issues.push({ path: key, message: `unknown field${didYouMean(key, [...REQUEST_FIELDS])}` });
  }
  return issues;
}

/** `{}`: a plain object with no own keys at all (a `__proto__` key, a getter or a symbol takes the schema's path). */
function isEmptyObject(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return (proto === Object.prototype || proto === null) && Reflect.ownKeys(value).length === 0;
}

/** One log line from a handler (`ctx.logger`) or, on the subprocess backend, its stdout/stderr. */
export interface LogEntry {
  level: 'debug' | 'info' | 'warn' | 'error';
  message: string;
  fields?: Record<string, unknown>;
  /** `logger` for ctx.logger; `stdout`/`stderr` for captured output. */
  stream: 'logger' | 'stdout' | 'stderr';
  executionId: string;
  time: number;
  /** The trace id of the execution's span, when the execution is traced (docs/observability.md). */
  traceId?: string;
  /** The execution span's id, when the execution is traced. */
  spanId?: string;
}

/** What `ctx.emit(event)` delivers to the host. */
export interface ExecutionEvent {
  executionId: string;
  pluginId: string;
  handlerId: string;
  time: number;
  /** The value the handler emitted, e.g. `{ type: 'progress', percent: 40 }`. */
  event: unknown;
}

export interface ExecuteOptions {
  /** Cancels the execution: queued → removed without running; running → `ctx.signal` fires. Result: ABORTED. */
  signal?: AbortSignal | undefined;
  /** Time limit, counted from the execution's hand-over to its runner (a thread's or child's start counts; the wait in the backend's queue does not). @default handler's manifest `timeoutMs`, else the backend's `defaultTimeoutMs` (30 000). */
  timeoutMs?: number | undefined;
  /**
   * Receives `ctx.logger` lines (and captured stdout/stderr on the subprocess backend). Not
   * awaited; what it throws, or the rejection of the promise it returns, is ignored.
   */
  onLog?: ((entry: LogEntry) => void) | undefined;
  /** Receives `ctx.emit(...)` events while the handler runs. Not awaited; what it throws, or the rejection of the promise it returns, is ignored. */
  onEvent?: ((event: ExecutionEvent) => void) | undefined;
  /**
   * Called once when a runner takes the execution (a thread, a child process, a queue worker): from
   * then on it runs — an abort fires its `ctx.signal`, its time limit counts — where before it
   * waited in the backend's queue, and an abort removed it unrun. Not awaited; what it throws, or
   * the rejection of the promise it returns, is ignored. Never called for one that never started.
   */
  onStart?: (() => void) | undefined;
  /** Keep the workspace directory after the execution (its path is in `meta.workspaceDir`). @default false */
  keepWorkspace?: boolean | undefined;
  /** Set by the WebSocket channel mounter: where `ctx.channel` calls go. Hosts rarely set this themselves. */
  channel?: ChannelBridge | undefined;
  /**
   * The services `ctx.platform` reaches for this execution only, instead of the backend's
   * `platform` option (a queue worker routes them back to the calling host). The handler's
   * permissions are checked the same way; services declared in `PlatformServices` are checked
   * against their declaration, as the backend's option is. @default the backend's `platform`
   */
  platform?: HostPlatform | undefined;
  /**
   * Where `ctx.platform` calls to services that `platform` does not have go instead, unchecked
   * here: to a gateway that checks them itself (a queue worker forwards them to the calling
   * host, whose governed gateway decides, so that a refusal is the host's, with its span).
   * @default none: such a call is refused here
   */
  platformForward?: ((service: string, method: string, args: unknown[]) => Promise<unknown>) | undefined;
  /**
   * Asked after each log line or event the handler sends: a promise while whoever takes them is
   * behind (a queue worker's caller, over the network), and the backend reads no more of the
   * handler's output until it settles, so the handler waits (worker-pool: its thread is held at
   * its next `ctx.emit`, log line or call; subprocess: its writes block once its pipe is full). An
   * in-process handler cannot be made to wait. For runners that forward output; hosts rarely set it.
   * @default none: output is read as fast as it comes
   */
  outputPace?: () => Promise<void> | undefined;
  /**
   * The latest time the handler may begin, in milliseconds since the epoch on this machine's
   * clock (as `Date.now()` gives it), asked when the execution is handed to
   * its runner and asked again by a runner that is not ready to begin by then (its modules took
   * long to load, or its process was stopped meanwhile). Past it, the handler is not begun: the
   * execution stops with ABORTED (`details.phase: 'running'`, as for any stop once a runner took
   * it). A queue worker bounds its local
   * executions by when their caller may have written them off. Not for the queue backend (its
   * runners are other machines). For runners that forward executions; hosts rarely set it.
   * @default none: the handler begins whenever its runner is ready
   */
  beginBy?: (() => number) | undefined;
  /**
   * A W3C `traceparent` to continue: the execution's span becomes a child of this (remote)
   * parent instead of the caller's active context. For a runner that received the trace over
   * the wire (a queue worker passes its caller's here). Without an OpenTelemetry SDK registered
   * nothing is recorded and the handler's `ctx.traceparent` is this value unchanged.
   * @default the caller's active OpenTelemetry context at `execute()`
   */
  traceparent?: string | undefined;
}

/**
 * The host end of `ctx.channel`: a connection id, its path, and a function performing
 * `send`/`sendTo`/`broadcast`/`close`. `ended` aborts once the calling execution is over (its
 * result decided, or stopped): a call that waits on the host (a send paced to a slow client)
 * stops waiting then.
 */
export interface ChannelBridge {
  connectionId: string;
  path: string;
  call(method: string, args: unknown[], ended?: AbortSignal): Promise<unknown>;
}

/** Checks `ExecuteOptions` by hand: it carries functions and a signal, which zod would only slow down. */
export function validateExecuteOptions(options: unknown, backend?: { readonly type: string; readonly workspace?: unknown; readonly remoteRunners?: boolean; readonly remoteWorkspaces?: boolean }): ExecuteOptions {
  if (options === undefined || options === null) return {};
  if (typeof options !== 'object' || Array.isArray(options)) {
    const message = `must be an object, got ${Array.isArray(options) ? 'an array' : typeof options}`;
    throw new ValidationError(`execute() options ${message}`, { details: { phase: 'options', issues: [{ path: '', message }] } });
  }
  // Each option read once, into the copy that is checked and returned: a getter (or a Proxy) that
  // answers one thing to the check and another to the use cannot slip past, and the caller may
  // change or reuse its object while the execution runs.
  const given = options as Record<string, unknown>;
  const o: Record<string, unknown> = {};
  for (const key of EXECUTE_OPTIONS) {
    const value = given[key];
    if (value !== undefined) o[key] = value;
  }
  const issues: ValidationIssue[] = [];
  const add = (path: string, message: string) => issues.push({ path, message });
  // Whole, as every other time limit (a manifest's, defaultTimeoutMs, shutdown's, the CLI's --timeout).
  if (o.timeoutMs !== undefined && (typeof o.timeoutMs !== 'number' || !Number.isInteger(o.timeoutMs) || o.timeoutMs <= 0 || o.timeoutMs > MAX_TIMER_MS)) {
    add('timeoutMs', `must be a whole, positive number of milliseconds up to ${MAX_TIMER_MS}, got ${typeof o.timeoutMs === 'string' ? `the string ${JSON.stringify(o.timeoutMs)}` : typeof o.timeoutMs === 'bigint' ? `the BigInt ${o.timeoutMs}n` : said(o.timeoutMs)}`);
  }
  if (o.signal !== undefined && !isAbortSignal(o.signal)) add('signal', 'must be an AbortSignal');
  if (o.onLog !== undefined && typeof o.onLog !== 'function') add('onLog', 'must be a function');
  if (o.onEvent !== undefined && typeof o.onEvent !== 'function') add('onEvent', 'must be a function');
  if (o.onStart !== undefined && typeof o.onStart !== 'function') add('onStart', 'must be a function');
  if (o.keepWorkspace !== undefined && typeof o.keepWorkspace !== 'boolean') add('keepWorkspace', 'must be a boolean');
  // Checked, never ignored: with no workspaces, one to keep is a mistake to say.
  if (o.keepWorkspace === true && backend && backend.workspace === undefined && !backend.remoteWorkspaces) add('keepWorkspace', `this ${backend.type} backend runs without workspaces (workspace: false): there is none to keep`);
  if (o.platform !== undefined && (typeof o.platform !== 'object' || o.platform === null)) add('platform', 'must be an object of services');
  if (o.platformForward !== undefined && typeof o.platformForward !== 'function') add('platformForward', 'must be a function (service, method, args) => Promise');
  if (o.outputPace !== undefined && typeof o.outputPace !== 'function') add('outputPace', 'must be a function () => Promise | undefined');
  else if (o.outputPace !== undefined && backend?.remoteRunners) add('outputPace', `a ${backend.type} backend's handlers run on other machines, whose workers pace their output to this host themselves`);
  if (o.beginBy !== undefined && typeof o.beginBy !== 'function') add('beginBy', 'must be a function () => number (milliseconds since the epoch)');
  else if (o.beginBy !== undefined && backend?.remoteRunners) add('beginBy', `a ${backend.type} backend's runners are other machines, whose clocks this time is not on`);
  if (o.traceparent !== undefined && (typeof o.traceparent !== 'string' || !parseTraceparent(o.traceparent))) {
    add('traceparent', `must be a W3C traceparent ("00-<32 hex trace id>-<16 hex span id>-<2 hex flags>"), got ${typeof o.traceparent === 'string' ? JSON.stringify(o.traceparent).slice(0, 80) : said(o.traceparent)}`);
  }
  if (o.channel !== undefined) {
    const c = o.channel as Partial<ChannelBridge> | null;
    if (!c || typeof c.connectionId !== 'string' || typeof c.path !== 'string' || typeof c.call !== 'function') {
      add('channel', 'must be { connectionId: string, path: string, call: function }');
    }
  }
  for (const key of Object.keys(given)) {
    if (EXECUTE_OPTIONS.includes(key)) continue;
    // A misspelt option silently ignored would be a surprise (`timeout: 1000` running for 30 s).
    const near = nearest(key, EXECUTE_OPTIONS);
    const elsewhere = executeKeyElsewhere(key);
    // A backend's option misspelt here (`maxConcurency`): the one meant, and where it goes.
    const backendsNear = near || elsewhere ? undefined : nearest(key, BACKEND_OPTION_NAMES);
    add(key, backendsNear ? `unknown option; did you mean "${backendsNear}"? (${executeKeyElsewhere(backendsNear)!})` : unknownKeyMessage(elsewhere, near));
  }
  if (issues.length) {
    throw validationError('Invalid execute() options', issues, { phase: 'options' });
  }
  return o as ExecuteOptions;
}

/** `String(value)` for a message, and said so for a value with no text (a null-prototype object, a toString() that throws): the option is named, not the backend failed. */
function said(value: unknown): string {
  try {
    return String(value);
  } catch {
    return 'an object that cannot be shown as text';
  }
}

function isAbortSignal(value: unknown): value is AbortSignal {
  return (
    value instanceof AbortSignal ||
    (typeof value === 'object' &&
      value !== null &&
      typeof (value as AbortSignal).aborted === 'boolean' &&
      typeof (value as AbortSignal).addEventListener === 'function' &&
      typeof (value as AbortSignal).removeEventListener === 'function')
  );
}

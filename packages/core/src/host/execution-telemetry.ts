import type { Attributes, Context, Span, SpanKind, Tracer } from '@opentelemetry/api';
import { isExecutionError, type KnownExecutionError } from '../errors.js';
import type { ExecutionMeta, ExecutionResult } from '../types.js';
import { instrumentsOf, type ExecutionInstruments } from './execution-metrics.js';
import { activeMeter, activeTracer, otelApi, recordQuietly, reportTelemetryFailure, type OtelApi } from './otel-api.js';
import { ATTR, EVENT } from './telemetry-names.js';
import { describeThrown, isError } from '../wire-value.js';
import { formatTraceparent, parseTraceparent } from './traceparent.js';
import { monotonicNow, monotonicOrigin } from '../real-timers.js';

/** A platform service or method name as it goes into a span (a handler chooses it: bounded). */
const MAX_NAME = 64;

/** A platform call's outcome when the execution ended before the host answered it. */
const UNANSWERED = 'unanswered';

/** The trace and span ids `onLog` entries carry. */
export interface LogTraceIds {
  readonly traceId: string;
  readonly spanId: string;
}

/**
 * What one execution records through OpenTelemetry: its span (a child of the caller's context,
 * with a child span per platform call) and its metrics. Made only when a tracer or meter
 * provider is registered (one property read says none is: otel-api.ts); otherwise the lifecycle
 * holds `undefined` and does no telemetry work at all. A failure of the SDK never fails an
 * execution: it is reported once as a process warning. Names: telemetry-names.ts.
 */
export class ExecutionTelemetry {
  readonly #api: OtelApi;
  readonly #tracer: Tracer | undefined;
  readonly #instruments: ExecutionInstruments | undefined;
  readonly #backend: string;
  readonly #kind: SpanKind;
  /** `monotonicNow()` at execute(). */
  readonly #t0: number;
  /** The caller's active context at execute(), with the remote parent it names once known (`continues`). */
  #parent: Context;
  #span: Span | undefined;
  /** The parent context with the execution span set: where platform calls and in-process handlers run. */
  #context: Context | undefined;
  #logIds: LogTraceIds | undefined;
  /** Metric attributes of a running execution (set when dispatched). */
  #running: Attributes | undefined;
  #dispatched = false;
  /** Its handler was resolved (pluginVersion): its ids name a registered handler. */
  #resolved = false;
  /** Spans of platform calls the host has not answered yet: ended with the execution if still open then (made with the first). */
  #openCalls: Set<Span> | undefined;

  /**
   * Called synchronously by `execute()`: undefined when neither a tracer nor a meter is
   * registered (or `@opentelemetry/api` is not installed). `remote`: the backend's runners are on
   * other machines (CLIENT span, else INTERNAL).
   */
  static begin(backend: string, remote: boolean, t0: number): ExecutionTelemetry | undefined {
    const api = otelApi();
    if (!api) return undefined;
    // Each signal on its own: a meter SDK that throws leaves the spans recorded, and the reverse.
    const tracer = recordQuietly(() => activeTracer(api));
    const instruments = recordQuietly(() => {
      const meter = activeMeter(api);
      return meter && instrumentsOf(meter);
    });
    if (!tracer && !instruments) return undefined;
    try {
      return new ExecutionTelemetry(api, tracer, instruments, backend, remote, t0);
    } catch (error) {
      // An SDK that throws must not fail (or throw out of) execute().
      reportTelemetryFailure(error);
      return undefined;
    }
  }

  private constructor(api: OtelApi, tracer: Tracer | undefined, instruments: ExecutionInstruments | undefined, backend: string, remote: boolean, t0: number) {
    this.#api = api;
    this.#tracer = tracer;
    this.#instruments = instruments;
    this.#backend = backend;
    this.#kind = remote ? api.SpanKind.CLIENT : api.SpanKind.INTERNAL;
    this.#t0 = t0;
    this.#parent = api.context.active();
  }

  /**
   * The remote span the caller named (`ExecuteOptions.traceparent`) is the execution span's parent,
   * also of a span ended before it started (a request refused, a backend shut down): a trace carried
   * over the wire is not cut there. What is no traceparent is left out (a VALIDATION_ERROR elsewhere).
   */
  continues(traceparent: unknown): void {
    const remote = typeof traceparent === 'string' ? parseTraceparent(traceparent) : undefined;
    if (remote) this.#parent = this.#api.trace.setSpanContext(this.#parent, { ...remote, isRemote: true });
  }

  /**
   * Start the execution span, named `execute {pluginId}/{handlerId}`, from the time of
   * execute(): a child of the remote caller's span `continues()` was given
   * (`ExecuteOptions.traceparent`), else of the caller's active context. Returns the traceparent the handler gets as
   * `ctx.traceparent`: the span's, or `traceparent` unchanged when nothing is traced.
   */
  start(pluginId: string, handlerId: string, executionId: string, traceparent: string | undefined): string | undefined {
    const tracer = this.#tracer;
    if (!tracer) return traceparent;
    try {
      return this.#start(tracer, pluginId, handlerId, executionId, traceparent);
    } catch (error) {
      reportTelemetryFailure(error);
      return traceparent;
    }
  }

  #start(tracer: Tracer, pluginId: string, handlerId: string, executionId: string, traceparent: string | undefined): string | undefined {
    const api = this.#api;
    const parent = this.#parent;
    const attributes = { [ATTR.backend]: this.#backend, [ATTR.pluginId]: pluginId, [ATTR.handlerId]: handlerId, [ATTR.executionId]: executionId };
    const span = tracer.startSpan(spanName(pluginId, handlerId), { kind: this.#kind, startTime: this.#epoch(this.#t0), attributes }, parent);
    this.#span = span;
    this.#context = api.trace.setSpan(parent, span);
    const spanContext = span.spanContext();
    if (!api.isSpanContextValid(spanContext)) return traceparent;
    const { traceId, spanId, traceFlags } = spanContext;
    this.#logIds = { traceId, spanId };
    return formatTraceparent(traceId, spanId, traceFlags);
  }

  /** The resolved plugin's version (known once the handler is resolved). */
  pluginVersion(version: string): void {
    this.#resolved = true;
    recordQuietly(() => this.#span?.setAttribute(ATTR.pluginVersion, version));
  }

  /** Ids for `onLog` entries; undefined when the execution is not traced. */
  get logIds(): LogTraceIds | undefined {
    return this.#logIds;
  }

  /** Run `fn` with the execution span active (an in-process handler's own spans, the host's services, nest under it). */
  within<T>(fn: () => T): T {
    return this.#context ? runOnceIn(this.#api, this.#context, fn) : fn();
  }

  /** It waits in the queue for a slot (or for the plugins to load: no `pluginId` yet): counted as queued until the returned function is called. */
  queued(pluginId: string | undefined): () => void {
    const queued = this.#instruments?.queued;
    if (!queued) return noop;
    const attributes: Attributes = pluginId === undefined ? { [ATTR.backend]: this.#backend } : { [ATTR.backend]: this.#backend, [ATTR.pluginId]: pluginId };
    let added = false;
    recordQuietly(() => {
      queued.add(1, attributes);
      added = true;
    });
    return added ? () => recordQuietly(() => queued.add(-1, attributes)) : noop;
  }

  /** Handed to the backend: running until `decided`. */
  dispatched(pluginId: string, handlerId: string): void {
    this.#dispatched = true;
    const running = this.#instruments?.running;
    if (!running) return;
    const attributes = { [ATTR.backend]: this.#backend, [ATTR.pluginId]: pluginId, [ATTR.handlerId]: handlerId };
    recordQuietly(() => {
      running.add(1, attributes);
      this.#running = attributes;
    });
  }

  /** The result is decided (`error`: how it failed): no longer running; a timeout, abort, shutdown or crash becomes a span event now. */
  decided(error: KnownExecutionError | undefined): void {
    const running = this.#running;
    this.#running = undefined;
    if (running) recordQuietly(() => this.#instruments!.running.add(-1, running));
    const name = error && (EVENT as Record<string, string>)[error.code];
    const span = this.#span;
    if (name && span) recordQuietly(() => span.addEvent(name, eventAttributes(error!)));
  }

  /** A `ctx.platform` call, as a child span of the execution (active while the host's method runs). */
  platformCall(service: string, method: string, call: () => Promise<unknown>): Promise<unknown> {
    const tracer = this.#tracer;
    const parent = this.#context;
    if (!tracer || !parent) return call();
    const api = this.#api;
    const attributes = { [ATTR.platformService]: clip(service), [ATTR.platformMethod]: clip(method) };
    let span: Span;
    let context: Context;
    try {
      span = tracer.startSpan(`platform ${attributes[ATTR.platformService]}.${attributes[ATTR.platformMethod]}`, { attributes }, parent);
      context = api.trace.setSpan(parent, span);
    } catch (error) {
      reportTelemetryFailure(error);
      return call();
    }
    let pending: Promise<unknown>;
    try {
      // Once, whatever the SDK throws: a second run would repeat the host's side effects.
      pending = Promise.resolve(runOnceIn(api, context, call));
    } catch (error) {
      pending = Promise.reject(error);
    }
    (this.#openCalls ??= new Set()).add(span);
    // What the span records is the SDK's business: one that throws (a processor's onEnd) leaves the call's own outcome as it was.
    return pending.then(
      (value) => {
        this.#callEnded(span, () => span.setAttribute(ATTR.outcome, 'ok'));
        return value;
      },
      (error: unknown) => {
        this.#callEnded(span, () => {
          const code = errorCode(error);
          span.setAttribute(ATTR.outcome, code);
          if (code === 'PERMISSION_DENIED') span.setAttribute(ATTR.permissionDenied, true);
          this.#failed(span, code, error);
        });
        throw error;
      },
    );
  }

  /** A platform call's span gets its outcome and ends, unless the execution's end ended it first (an answer after that). */
  #callEnded(span: Span, record: () => void): void {
    if (!this.#openCalls!.delete(span)) return;
    recordQuietly(() => {
      record();
      span.end();
    });
  }

  /**
   * The execution ended with calls the host had not answered: their spans end with it (a span never
   * ended is never exported), so that the trace shows what a failed execution waited for (a service
   * that hangs). An error only when the execution failed: one that returned without awaiting a call
   * (fire and forget) did not wait for it.
   */
  #endUnanswered(meta: ExecutionMeta, code: string | undefined): void {
    const open = this.#openCalls;
    if (!open?.size) return;
    for (const span of open) {
      recordQuietly(() => {
        span.setAttribute(ATTR.outcome, UNANSWERED);
        if (code !== undefined) {
          span.setAttribute(ATTR.errorType, UNANSWERED);
          span.setStatus({ code: this.#api.SpanStatusCode.ERROR, message: `${UNANSWERED}: the host had not answered when the execution ended (${code})` });
        }
        span.end(this.#epoch(this.#t0 + meta.durationMs));
      });
    }
    open.clear();
  }

  /** The result: the span gets its outcome, runner and timings and ends; the metrics record it. */
  finish(result: ExecutionResult): void {
    const code = result.ok ? undefined : result.error.code;
    // The span and the metrics apart: one that throws does not keep the other from being recorded.
    if (this.#tracer) {
      this.#endUnanswered(result.meta, code);
      recordQuietly(() => this.#endSpan(result.meta, code, result.ok ? undefined : result.error));
    }
    if (this.#instruments) recordQuietly(() => this.#recordMetrics(this.#instruments!, result.meta, code));
  }

  #recordMetrics(instruments: ExecutionInstruments, meta: ExecutionMeta, code: string | undefined): void {
    const attributes: Attributes = { [ATTR.backend]: this.#backend };
    // Only ids of a handler that resolved: those a caller made up (an id per request) would be a series each.
    if (this.#resolved) Object.assign(attributes, { [ATTR.pluginId]: meta.pluginId, [ATTR.handlerId]: meta.handlerId });
    // Each instrument on its own: one that throws does not take the others with it.
    // Not begun with a spread: on Node 20 such an object literal gets a V8 map of its own each time.
    const outcome: Attributes = { [ATTR.outcome]: code ?? 'ok', ...attributes };
    if (code) outcome[ATTR.errorType] = code;
    if (this.#dispatched) recordQuietly(() => instruments.queueWait.record(meta.queueWaitMs / 1000, outcome));
    recordQuietly(() => instruments.duration.record(meta.durationMs / 1000, outcome));
    recordQuietly(() => instruments.executions.add(1, outcome));
  }

  #endSpan(meta: ExecutionMeta, code: string | undefined, error: KnownExecutionError | undefined): void {
    // Failed before its handler was known (a bad request, shut down): a span all the same.
    // Its name says the request's ids: its attributes too (a span is no series; a metric's ids are only a resolved handler's).
    const named = { ...(meta.pluginId ? { [ATTR.pluginId]: meta.pluginId } : {}), ...(meta.handlerId ? { [ATTR.handlerId]: meta.handlerId } : {}) };
    const span = this.#span ?? this.#tracer!.startSpan(spanName(meta.pluginId, meta.handlerId), { kind: this.#kind, startTime: this.#epoch(this.#t0), attributes: { [ATTR.backend]: this.#backend, ...named } }, this.#parent);
    const attributes: Attributes = { [ATTR.executionId]: meta.executionId, [ATTR.outcome]: code ?? 'ok', [ATTR.timeoutMs]: meta.timeoutMs, [ATTR.queueWaitMs]: meta.queueWaitMs, [ATTR.runMs]: meta.runMs };
    if (meta.runnerId !== undefined) attributes[ATTR.runnerId] = meta.runnerId;
    if (meta.runnerHost !== undefined) attributes[ATTR.runnerHost] = meta.runnerHost;
    if (meta.pid !== undefined) attributes[ATTR.pid] = meta.pid;
    if (meta.workerId !== undefined) attributes[ATTR.threadId] = meta.workerId;
    span.setAttributes(attributes);
    // One stopped before it was handed to the backend (aborted or shut down while queued) was
    // never `decided`: its event is recorded here.
    const event = !this.#dispatched && error ? (EVENT as Record<string, string>)[error.code] : undefined;
    if (event) span.addEvent(event, eventAttributes(error!), this.#epoch(this.#t0 + meta.durationMs));
    if (code) this.#failed(span, code, error);
    span.end(this.#epoch(this.#t0 + meta.durationMs));
  }

  #failed(span: Span, code: string, error: unknown): void {
    span.setAttribute(ATTR.errorType, code);
    // A host service may throw what is not an Error: said as the handler is told it (describeThrown).
    const message = isError(error) ? (error as Error).message : describeThrown(error, 'The service');
    span.setStatus({ code: this.#api.SpanStatusCode.ERROR, message: statusMessage(typeof message === 'string' ? `${code}: ${message}` : code) });
  }

  /** Epoch milliseconds of a `monotonicNow()` reading (what the API's TimeInput takes). */
  #epoch(at: number): number {
    return monotonicOrigin + at;
  }
}

/**
 * `fn()` with `context` active, run once whatever the SDK's context manager does: throws before or
 * after it, calls it twice, or not at all before it returns (then reported, and `fn` run outside
 * the context if it had not run; a later call gets the first outcome). What `fn` throws is thrown.
 */
function runOnceIn<T>(api: OtelApi, context: Context, fn: () => T): T {
  let outcome: { value: T } | { error: unknown } | undefined;
  const settled = (): T => {
    if ('error' in outcome!) throw outcome.error;
    return outcome!.value;
  };
  // Called again by a context manager that breaks its contract (twice, or later): the first outcome.
  const once = (): T => {
    if (outcome) return settled();
    try {
      outcome = { value: fn() };
    } catch (error) {
      outcome = { error };
    }
    return settled();
  };
  try {
    api.context.with(context, once);
  } catch (error) {
    if (!outcome || !('error' in outcome)) reportTelemetryFailure(error);
  }
  if (!outcome) {
    // It did not call `fn` before returning: run it now, outside the context, and only now.
    reportTelemetryFailure(new Error('the context manager\'s with() returned without calling its function'));
    return once();
  }
  return settled();
}

function spanName(pluginId: string, handlerId: string): string {
  return pluginId && handlerId ? `execute ${pluginId}/${handlerId}` : 'execute';
}

/** What a span event says about how the execution was stopped or crashed. */
function eventAttributes(error: KnownExecutionError): Attributes {
  const details = (error.details ?? {}) as Record<string, unknown>;
  const attributes: Attributes = { [ATTR.errorType]: error.code };
  if (error.code === 'WORKER_CRASHED' && typeof details.reason === 'string') attributes[ATTR.crashReason] = details.reason;
  if (error.code === 'TIMEOUT' && typeof details.timeoutMs === 'number') attributes[ATTR.timeoutMs] = details.timeoutMs;
  return attributes;
}

/** The error code of what a platform call failed with (a host service's own error: its name). */
function errorCode(error: unknown): string {
  if (isExecutionError(error)) return error.code;
  const name = (error as { name?: unknown } | null)?.name;
  return typeof name === 'string' && name ? clip(name) : 'Error';
}

function clip(name: string): string {
  const text = String(name);
  return text.length > MAX_NAME ? `${text.slice(0, MAX_NAME)}…` : text;
}

function noop(): void {}

/** The longest span status message: a handler's error message may be 64 KiB, more than many tracing backends keep of a span. */
const STATUS_MESSAGE_MAX = 1024;

/** `message`, cut to STATUS_MESSAGE_MAX characters saying how many were left out. */
function statusMessage(message: string): string {
  return message.length > STATUS_MESSAGE_MAX ? `${message.slice(0, STATUS_MESSAGE_MAX)}… (${message.length - STATUS_MESSAGE_MAX} characters left out)` : message;
}

import type { Counter, Histogram, Meter, UpDownCounter } from '@opentelemetry/api';
import { activeMeter, otelApi, recordQuietly } from './otel-api.js';
import { ATTR, METRIC } from './telemetry-names.js';
import { CRASH_REASONS } from '../error-details.js';

/** The metric instruments of one meter (docs/observability.md lists them with their attributes). */
export interface ExecutionInstruments {
  readonly duration: Histogram;
  readonly queueWait: Histogram;
  readonly executions: Counter;
  readonly running: UpDownCounter;
  readonly queued: UpDownCounter;
  readonly runnerStarts: Counter;
  readonly runnerCrashes: Counter;
}

/**
 * Bucket boundaries in seconds: executions run from microseconds (in-process) to minutes; the
 * semantic conventions' HTTP buckets (5 ms to 10 s) would put every in-process execution in one.
 */
const SECONDS_BUCKETS = [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

/** The instruments of the meter last seen (a host registers one meter provider, usually once). */
let made: { meter: Meter; instruments: ExecutionInstruments } | undefined;

/** The instruments of `meter`, made once per meter. */
export function instrumentsOf(meter: Meter): ExecutionInstruments {
  if (made?.meter !== meter) made = { meter, instruments: createInstruments(meter) };
  return made.instruments;
}

function createInstruments(meter: Meter): ExecutionInstruments {
  const seconds = (name: string, description: string) =>
    meter.createHistogram(name, { unit: 's', description, advice: { explicitBucketBoundaries: SECONDS_BUCKETS } });
  return {
    duration: seconds(METRIC.duration, 'Time from execute() to the result, whatever the outcome'),
    queueWait: seconds(METRIC.queueWait, 'Time an admitted execution waited for a slot and its workspace before dispatch'),
    executions: meter.createCounter(METRIC.executions, { unit: '{execution}', description: 'Finished executions, by outcome (ok or the error code)' }),
    running: meter.createUpDownCounter(METRIC.running, { unit: '{execution}', description: 'Executions dispatched to a runner and not decided yet' }),
    queued: meter.createUpDownCounter(METRIC.queued, { unit: '{execution}', description: 'Executions waiting in the queue for a slot' }),
    runnerStarts: meter.createCounter(METRIC.runnerStarts, { unit: '{runner}', description: 'Runners (threads, processes) started' }),
    runnerCrashes: meter.createCounter(METRIC.runnerCrashes, { unit: '{runner}', description: 'Runners that died without being asked to' }),
  };
}

/** The instruments of the registered SDK's meter, or undefined when none is registered. */
function currentInstruments(): ExecutionInstruments | undefined {
  const api = otelApi();
  const meter = api && activeMeter(api);
  return meter ? instrumentsOf(meter) : undefined;
}

/**
 * For backends with runners of their own (backend kit): a runner (thread, process) started.
 * Nothing is recorded when no OpenTelemetry SDK is registered.
 */
export function recordRunnerStart(backend: string): void {
  recordQuietly(() => currentInstruments()?.runnerStarts.add(1, { [ATTR.backend]: backend }));
}

/**
 * For backends with runners of their own (backend kit): a runner died without being asked to
 * (`reason`: a `CrashReason` such as `exit`, `oom`, `signal`, where known). Any other word (a queue
 * worker of another version, a forged peer's: remote runners' reasons come over the wire) is
 * counted as `other`: a metric's attribute values stay a few.
 */
export function recordRunnerCrash(backend: string, reason?: string): void {
  if (reason !== undefined && !(CRASH_REASONS as readonly string[]).includes(reason)) reason = 'other';
  recordQuietly(() => currentInstruments()?.runnerCrashes.add(1, reason === undefined ? { [ATTR.backend]: backend } : { [ATTR.backend]: backend, [ATTR.crashReason]: reason }));
}


/**
 * The W3C Trace Context `traceparent` header (https://www.w3.org/TR/trace-context/#traceparent-header):
 * `{version}-{trace-id}-{parent-id}-{trace-flags}`, lowercase hex. How a trace crosses every
 * boundary here as plain data: `RunnerTask.traceparent` → `ctx.traceparent`, and
 * `ExecuteOptions.traceparent` in (a queue worker continuing the caller's trace).
 */
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;
const ZERO_TRACE_ID = '0'.repeat(32);
const ZERO_SPAN_ID = '0'.repeat(16);

/** A parsed traceparent: the parent span's ids and flags. */
export interface TraceParent {
  traceId: string;
  spanId: string;
  traceFlags: number;
}

/**
 * Parse a traceparent; undefined when it is not one. Version 00 is exactly 55 characters; a later
 * version may carry more fields after the four it shares with 00 (the spec's forward
 * compatibility), version ff is invalid, and all-zero ids are invalid.
 */
export function parseTraceparent(value: string): TraceParent | undefined {
  const match = TRACEPARENT.exec(value);
  if (!match) return undefined;
  const [, version, traceId, spanId, flags, rest] = match as unknown as [string, string, string, string, string, string | undefined];
  if (version === 'ff' || (version === '00' && rest !== undefined)) return undefined;
  if (traceId === ZERO_TRACE_ID || spanId === ZERO_SPAN_ID) return undefined;
  return { traceId, spanId, traceFlags: parseInt(flags, 16) };
}

/**
 * The version 00 traceparent of a span, its ids in lower case as the format has them: the API takes
 * upper-case hex ids as valid, and a span has them so under a parent a propagator (B3) read so.
 */
export function formatTraceparent(traceId: string, spanId: string, traceFlags: number): string {
  return `00-${traceId.toLowerCase()}-${spanId.toLowerCase()}-${(traceFlags & 0xff).toString(16).padStart(2, '0')}`;
}

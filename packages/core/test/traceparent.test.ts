import { describe, expect, it } from 'vitest';
import { validateExecuteOptions } from '../src/host/request.js';
import { formatTraceparent, parseTraceparent } from '../src/host/traceparent.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN = '00f067aa0ba902b7';

describe('W3C traceparent', () => {
  it('parses version 00 and formats it back', () => {
    expect(parseTraceparent(`00-${TRACE}-${SPAN}-01`)).toEqual({ traceId: TRACE, spanId: SPAN, traceFlags: 1 });
    expect(formatTraceparent(TRACE, SPAN, 1)).toBe(`00-${TRACE}-${SPAN}-01`);
    expect(formatTraceparent(TRACE, SPAN, 0)).toBe(`00-${TRACE}-${SPAN}-00`);
  });

  it('formats ids an SDK gives in upper case (valid to the API) in lower case, as a traceparent has them', () => {
    const formatted = formatTraceparent(TRACE.toUpperCase(), SPAN.toUpperCase(), 1);
    expect(formatted).toBe(`00-${TRACE}-${SPAN}-01`);
    expect(parseTraceparent(formatted)).toEqual({ traceId: TRACE, spanId: SPAN, traceFlags: 1 });
  });

  it('accepts a later version with more fields, as the spec asks', () => {
    expect(parseTraceparent(`01-${TRACE}-${SPAN}-01-what-comes-next`)).toEqual({ traceId: TRACE, spanId: SPAN, traceFlags: 1 });
  });

  it.each([
    ['version ff', `ff-${TRACE}-${SPAN}-01`],
    ['00 with extra fields', `00-${TRACE}-${SPAN}-01-extra`],
    ['a later version whose flags run on without a dash', `01-${TRACE}-${SPAN}-01x`],
    ['all-zero trace id', `00-${'0'.repeat(32)}-${SPAN}-01`],
    ['all-zero span id', `00-${TRACE}-${'0'.repeat(16)}-01`],
    ['upper case', `00-${TRACE.toUpperCase()}-${SPAN}-01`],
    ['short trace id', `00-${TRACE.slice(1)}-${SPAN}-01`],
    ['garbage', 'not-a-traceparent'],
  ])('refuses %s', (_what, value) => {
    expect(parseTraceparent(value)).toBeUndefined();
  });

  it('ExecuteOptions.traceparent must be one (VALIDATION_ERROR naming the option)', () => {
    expect(validateExecuteOptions({ traceparent: `00-${TRACE}-${SPAN}-01` }).traceparent).toBe(`00-${TRACE}-${SPAN}-01`);
    expect(() => validateExecuteOptions({ traceparent: 'nope' })).toThrow(/traceparent/);
    expect(() => validateExecuteOptions({ traceparent: 42 })).toThrow(/traceparent/);
  });
});

/**
 * Host side: the shape check of what a thread sends on its channel. Plugin code runs on the
 * thread in the runner's own realm, so it can reach that port too (a patched
 * `MessagePort.prototype.postMessage` sees it the next time the runner posts): nothing a thread
 * sends is used before this says it is well-formed.
 */
import { describeShape, runnerMessageProblem } from '@kb-labs/plugin-execution-core/backend-kit';

const RETIRE_REASONS = new Set<unknown>(['globals-tampered', 'handles-left', 'recycled']);
const CRASH_REASONS = new Set<unknown>(['uncaught-exception', 'unhandled-rejection', 'exit']);

/** What is wrong with a message from a thread (ThreadToHost), or undefined when it is well-formed. */
export function threadMessageProblem(message: unknown): string | undefined {
  if (typeof message !== 'object' || message === null || Array.isArray(message)) return `message is not an object (${describeShape(message)})`;
  const m = message as Record<string, unknown>;
  if (m.units !== undefined && !isCount(m.units)) return `units is not a count (${describeShape(m.units)})`;
  if ('crash' in m) return crashReportProblem(m.crash);
  if (!isCount(m.k)) return `k is not an execution number (${describeShape(m.k)})`;
  if ('declined' in m) return RETIRE_REASONS.has(m.declined) ? undefined : `declined for an unknown reason ${describeShape(m.declined)}`;
  if ('out' in m) {
    if (m.out !== 'stdout' && m.out !== 'stderr') return `output of an unknown stream ${describeShape(m.out)}`;
    return Array.isArray(m.lines) && m.lines.every((line) => typeof line === 'string') ? undefined : 'output lines that are not strings';
  }
  if (m.retire !== undefined && !RETIRE_REASONS.has(m.retire)) return `retire for an unknown reason ${describeShape(m.retire)}`;
  if ((m.m as { type?: unknown } | null)?.type === 'ready') return 'a ready message (a thread says hello on its parentPort)';
  return runnerMessageProblem(m.m);
}

function crashReportProblem(report: unknown): string | undefined {
  if (typeof report !== 'object' || report === null) return `crash report is not an object (${describeShape(report)})`;
  const r = report as Record<string, unknown>;
  if (!Number.isSafeInteger(r.k)) return `crash report without an execution number (${describeShape(r.k)})`;
  if (!CRASH_REASONS.has(r.reason)) return `crash report with an unknown reason ${describeShape(r.reason)}`;
  if (r.error !== undefined && (typeof r.error !== 'object' || r.error === null)) return 'crash report with an error that is not an object';
  if (r.exitCode !== undefined && !Number.isSafeInteger(r.exitCode)) return 'crash report with an exit code that is not an integer';
  return undefined;
}

function isCount(value: unknown): boolean {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}

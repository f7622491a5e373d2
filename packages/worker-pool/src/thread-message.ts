/**
 * Host side: the shape check of what a thread sends on its channel. Plugin code runs on the
 * thread in the runner's own realm, so it can reach that port too (a patched
 * `MessagePort.prototype.postMessage` sees it the next time the runner posts): nothing a thread
 * sends is used before this says it is well-formed.
 */
import { describeShape, runnerMessageProblem } from '@kb-labs/plugin-execution-core/backend-kit';
import { MAX_MESSAGE_UNITS } from './flow-control.js';

const RETIRE_REASONS = new Set<unknown>(['globals-tampered', 'handles-left', 'recycled']);
const CRASH_REASONS = new Set<unknown>(['uncaught-exception', 'unhandled-rejection', 'exit']);

/** What is wrong with a message from a thread (ThreadToHost), or undefined when it is well-formed. */
export function threadMessageProblem(message: unknown): string | undefined {
  if (typeof message !== 'object' || message === null || Array.isArray(message)) return `message is not an object (${describeShape(message)})`;
  const m = message as Record<string, unknown>;
  if ('crash' in m) return m.units === undefined ? crashReportProblem(m.crash) : 'a crash report with units';
  if (!isCount(m.k)) return `k is not an execution number (${describeShape(m.k)})`;
  if ('declined' in m) return RETIRE_REASONS.has(m.declined) ? undefined : `declined for an unknown reason ${describeShape(m.declined)}`;
  // What an execution sends before its answer is weighed and paced; its answer is not.
  const type = (m.m as { type?: unknown } | null)?.type;
  const paced = 'out' in m || type !== 'result';
  if (paced ? !(isCount(m.units) && (m.units as number) >= 1 && (m.units as number) <= MAX_MESSAGE_UNITS) : m.units !== undefined) {
    return `units ${describeShape(m.units)} where the runtime weighs ${paced ? '1 to 2^20' : 'none'}`;
  }
  if ('out' in m) {
    if (m.out !== 'stdout' && m.out !== 'stderr') return `output of an unknown stream ${describeShape(m.out)}`;
    return Array.isArray(m.lines) && m.lines.every((line) => typeof line === 'string') ? undefined : 'output lines that are not strings';
  }
  if (m.retire !== undefined && !RETIRE_REASONS.has(m.retire)) return `retire for an unknown reason ${describeShape(m.retire)}`;
  if (type === 'ready') return 'a ready message (a thread says hello on its parentPort)';
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

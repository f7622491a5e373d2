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
  if ('reaped' in m) return m.reaped === true ? undefined : `reaped ${describeShape(m.reaped)} where the runtime says true`;
  if (!isCount(m.k)) return `k is not an execution number (${describeShape(m.k)})`;
  if ('declined' in m) return RETIRE_REASONS.has(m.declined) ? undefined : `declined for an unknown reason ${describeShape(m.declined)}`;
  if ('verdict' in m) return verdictProblem(m.verdict);
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
  if (m.pending !== undefined && (m.pending !== true || type !== 'result' || m.retire !== undefined || m.bound !== undefined)) return 'pending on what is not an answer without a verdict';
  const verdict = verdictProblem(m);
  if (verdict) return verdict;
  if (type === 'ready') return 'a ready message (a thread says hello on its parentPort)';
  return runnerMessageProblem(m.m);
}

/** What is wrong with a thread's verdict (on its answer, or after it: ThreadVerdict), or undefined. */
function verdictProblem(verdict: unknown): string | undefined {
  if (typeof verdict !== 'object' || verdict === null) return `a verdict that is not an object (${describeShape(verdict)})`;
  const v = verdict as Record<string, unknown>;
  if (v.retire !== undefined && !RETIRE_REASONS.has(v.retire)) return `retire for an unknown reason ${describeShape(v.retire)}`;
  if (v.reaping !== undefined && (v.reaping !== true || v.retire === undefined)) return 'reaping without a retire';
  if (v.bound !== undefined && (v.bound !== true || v.retire !== undefined)) return 'bound on a thread that goes, or not true';
  return undefined;
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

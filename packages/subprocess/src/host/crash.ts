import type { ChildProcess } from 'node:child_process';
import { WorkerCrashedError, deserializeError, type CrashReason, type SerializedError } from '@kb-labs/plugin-execution-core';
import { shownControls } from '@kb-labs/plugin-execution-core/backend-kit';

/** The reasons a child process can end without a result (`error.details.reason`; core's CrashReason names them all). */
export type ChildCrashReason = Extract<CrashReason, 'exit' | 'signal' | 'oom' | 'uncaught-exception' | 'unhandled-rejection' | 'protocol' | 'start-failed' | 'sandbox'>;

export interface ChildEnd {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** The end of its stderr. */
  stderrTail: string;
  pid: number | undefined;
  /** Set when the host killed it for breaking the protocol. */
  protocolError?: string;
  /** Set when bubblewrap could not set up the sandbox (nothing of the plugin ran). */
  sandboxError?: string;
  /** Set when it never completed the start-up handshake. */
  handshakeError?: string;
  memoryMb?: number | undefined;
  /** The child's own report of the error that ended it (an uncaught exception, an unhandled rejection). */
  crash?: { reason: 'uncaught-exception' | 'unhandled-rejection'; error: SerializedError };
}

/** What V8 prints when the heap limit is hit (before it aborts with SIGABRT / exit code 134). */
const OOM_PATTERNS = [/Reached heap limit/, /JavaScript heap out of memory/, /Allocation failed - process out of memory/, /Fatal JavaScript out of memory/];

export function crashReason(end: ChildEnd): ChildCrashReason {
  if (end.protocolError) return 'protocol';
  if (end.sandboxError) return 'sandbox';
  if (OOM_PATTERNS.some((p) => p.test(end.stderrTail))) return 'oom';
  if (end.handshakeError) return 'start-failed';
  if (end.signal) return 'signal';
  return end.crash?.reason ?? 'exit';
}

/** The WORKER_CRASHED error for a child that ended without handing back a result. */
export function crashError(end: ChildEnd, subject: { pluginId: string; handlerId: string } | undefined): WorkerCrashedError {
  const reason = crashReason(end);
  const who = subject ? `The child process running handler "${subject.handlerId}" of plugin "${subject.pluginId}"` : 'A child process';
  const how = end.signal ? `was killed by ${end.signal}` : `exited with code ${end.exitCode}`;
  const cause = end.crash ? deserializeError(end.crash.error) : undefined;
  let message: string;
  switch (reason) {
    case 'protocol':
      message = `${who} broke the host protocol and was killed: ${end.protocolError}`;
      break;
    case 'oom':
      message = `${who} ran out of memory${end.memoryMb ? ` (heap limit ${end.memoryMb} MB)` : ''} and ${how}`;
      break;
    case 'sandbox':
      message = `${who} did not start: ${end.sandboxError}`;
      break;
    case 'start-failed':
      message = `${who} did not start: ${end.handshakeError}`;
      break;
    case 'uncaught-exception':
    case 'unhandled-rejection':
      message = `${who} died of ${reason === 'unhandled-rejection' ? 'an unhandled promise rejection' : 'an uncaught exception'}: ${shownControls(cause!.message)}`;
      break;
    default:
      message = `${who} ${how} before returning a result`;
  }
  // The plugin's bytes, in a message a host logs or prints: its control characters (a terminal's
  // escape sequences) shown, not sent. `details.stderrTail` keeps them as they came.
  const tail = shownStderrEnd(end.stderrTail);
  if (tail && reason !== 'protocol') message += `\n--- end of its stderr ---\n${tail}`;
  return new WorkerCrashedError(message, {
    details: {
      reason,
      exitCode: end.exitCode,
      signal: end.signal,
      stderrTail: end.stderrTail,
      ...(end.pid !== undefined ? { runnerId: `pid:${end.pid}` } : {}),
      ...(subject ?? {}),
      ...(end.protocolError ? { protocolError: end.protocolError } : {}),
      ...(end.memoryMb ? { heapLimitMb: end.memoryMb } : {}),
      ...(cause ? { message: cause.message } : {}),
    },
    ...(cause ? { cause } : {}),
  });
}

/** The WORKER_CRASHED error for an execution refused because `sandbox: 'required'` cannot run (`reason`): no child was started. */
export function sandboxRefusedError(reason: string, subject: { pluginId: string; handlerId: string }, passing = false): WorkerCrashedError {
  // A passing shortage refuses in every mode; otherwise only 'required' refuses.
  return new WorkerCrashedError(`The child process for handler "${subject.handlerId}" of plugin "${subject.pluginId}" was not started: ${passing ? '' : "sandbox 'required', but "}${reason}`, {
    details: { reason: 'sandbox', sandboxError: reason, pluginId: subject.pluginId, handlerId: subject.handlerId },
  });
}

/** The end of `text`, up to `chars` characters, from the start of a line (a longer last line: its end). */
/**
 * The end of a child's stderr as a message quotes it: its last lines, up to 1,000 characters, the
 * plugin's control characters (a terminal's escape sequences) shown, not sent.
 */
export function shownStderrEnd(stderrTail: string): string {
  return shownControls(lastLines(stderrTail.trim(), 1000));
}

function lastLines(text: string, chars: number): string {
  if (text.length <= chars) return text;
  const end = text.slice(-chars);
  const lineStart = end.indexOf('\n');
  return lineStart >= 0 && lineStart < end.length - 1 ? end.slice(lineStart + 1) : end;
}

/** What a shortage of the host's means, by the system's code and by the words its C library prints for it (bubblewrap's own messages). */
const SHORTAGES: Array<{ code: string; words: string; meaning: string }> = [
  { code: 'EAGAIN', words: 'Resource temporarily unavailable', meaning: "the system refused a new process: too many processes or threads for this user, ulimit -u, or in the host's cgroup, pids.max" },
  { code: 'ENOMEM', words: 'Cannot allocate memory', meaning: 'the system has no memory left for a new process' },
];

/**
 * A spawn the system refused (Node's 'error' event, no process made): its message, with what the
 * system's code means where it is a shortage of the host's rather than a fault of the command
 * (sandboxed, bubblewrap never ran: this is all there is to tell).
 */
export function spawnRefusal(error: Error): string {
  const shortage = SHORTAGES.find((s) => s.code === (error as NodeJS.ErrnoException).code);
  return shortage ? `${error.message} (${shortage.meaning})` : error.message;
}

/**
 * bubblewrap failed to set the sandbox up, in its own words (its last `bwrap: …` line: `Can't fork
 * for pid 1`, `Creating new namespace failed` …) and with what a shortage it names means; undefined
 * when it said nothing. Before the child's ready message nothing of the plugin has run, so such a
 * line is bubblewrap's own.
 */
export function bwrapSetupFailure(stderrTail: string): string | undefined {
  const said = [...stderrTail.matchAll(/^bwrap: (.+)$/gm)].at(-1)?.[1]?.trim();
  if (!said) return undefined;
  const shortage = SHORTAGES.find((s) => said.endsWith(s.words));
  return `bubblewrap could not set up the sandbox: ${shownControls(shortage ? `${said} (${shortage.meaning})` : said)}`;
}

/**
 * A spawn that failed before its pipes were made (EMFILE, ENFILE: the host is out of file
 * descriptors): Node reports it with an 'error' event on the next tick, which, with no listener,
 * would end the host, and there is no child to watch. The start's failure, to throw; else undefined.
 */
export function spawnedWithoutPipes(child: ChildProcess): WorkerCrashedError | undefined {
  if (child.stdio !== undefined && child.stdout !== null) return undefined;
  child.once('error', () => undefined);
  const message =
    'A child process could not be started: the host has no file descriptors left for its pipes (the spawn failed with EMFILE or ENFILE): ' +
    'raise the open-file limit (ulimit -n, LimitNOFILE=) or run fewer executions at once (maxConcurrency)';
  return new WorkerCrashedError(message, { details: { reason: 'start-failed', message } });
}

import { hostLogMessage, shownControls } from '@kb-labs/plugin-execution-core/backend-kit';
import { isCount, isName } from '../shared/presence.js';
import { isSubjectToken } from '../shared/subjects.js';
import type { LogBody, WorkerIdentity } from '../shared/wire.js';

/**
 * What is wrong with a `started` body (`{ worker: { id, host, pid }, task? }`) for the shape
 * workers send, undefined when nothing is. Its identity is what this host keeps of the worker: it
 * names the subject the execution's messages go to, and its meta and messages quote it (a host
 * that was an object without a toString threw in the heartbeat watch, at every tick, for good).
 */
export function startProblem(body: unknown): string | undefined {
  if (!isObject(body)) return `it is ${kindOf(body)}, not an object`;
  const worker = (body as { worker?: unknown }).worker;
  if (!isObject(worker)) return `its worker is ${kindOf(worker)}, not an object`;
  const { id, host, pid } = worker as Record<string, unknown>;
  if (!isSubjectToken(id)) return `its worker.id is ${kindOf(id)}, not a worker's id (letters, digits, "_" and "-", 64 at most)`;
  if (!isName(host)) return `its worker.host is ${kindOf(host)}, not a host name (1 to 256 characters)`;
  if (!isCount(pid)) return `its worker.pid is ${kindOf(pid)}, not a process id`;
  return undefined;
}

/**
 * What is wrong with a result for the shape workers send (ok with its data, or not with its error;
 * its meta's fields of their types), undefined when nothing is. Its meta is the execution's (a
 * list of artifacts holding numbers and objects, a pid that was a text, went to the caller as they came).
 */
export function resultProblem(body: unknown): string | undefined {
  if (!isObject(body)) return `it is ${kindOf(body)}, not an object`;
  const { ok, error, meta } = body as Record<string, unknown>;
  if (ok !== true && ok !== false) return `its ok is ${kindOf(ok)}, not true or false`;
  if (ok === false && !isObject(error)) return `it is not ok, and its error is ${kindOf(error)}, not an object`;
  // Absent from none a worker sends; tolerated, as it was.
  if (meta === undefined) return undefined;
  if (!isObject(meta)) return `its meta is ${kindOf(meta)}, not an object`;
  const { artifacts, workspaceDir, pid, threadId } = meta as Record<string, unknown>;
  if (artifacts !== undefined && !Array.isArray(artifacts)) return `its meta.artifacts is ${kindOf(artifacts)}, not a list`;
  const odd = Array.isArray(artifacts) ? artifacts.findIndex((each) => typeof each !== 'string') : -1;
  if (odd >= 0) return `its meta.artifacts[${odd}] is ${kindOf((artifacts as unknown[])[odd])}, not a file name`;
  if (workspaceDir !== undefined && typeof workspaceDir !== 'string') return `its meta.workspaceDir is ${kindOf(workspaceDir)}, not a path`;
  if (pid !== undefined && !isCount(pid)) return `its meta.pid is ${kindOf(pid)}, not a process id`;
  if (threadId !== undefined && !isCount(threadId)) return `its meta.threadId is ${kindOf(threadId)}, not a thread id`;
  return undefined;
}

/**
 * The most log lines and events a worker could send one execution a millisecond: each is a message
 * of its own, from the handler through the worker's local backend (measured: 4 to 15 a millisecond,
 * in-process, on 2 cores); a million a second leaves room for any machine.
 */
const MOST_OUTPUT_PER_MS = 1000;

/**
 * How many log lines and events a result's `Kb-Output-Sent` header says its worker sent the
 * execution, if that worker could have sent as many in the `elapsedMs` since the execution began
 * here; undefined if not, or absent (older workers). A forged 1e15 made the host warn
 * "1000000000000000 of the 1000000000000000 log line(s) and event(s) … did not reach this host".
 */
export function outputSentOf(header: string | undefined, elapsedMs: number): number | undefined {
  const sent = header === undefined ? Number.NaN : Number(header);
  return Number.isSafeInteger(sent) && sent >= 0 && sent <= Math.max(1, elapsedMs) * MOST_OUTPUT_PER_MS ? sent : undefined;
}

/** The warning that `lost` of the `sent` log lines and events of an execution on `worker` did not reach this host. */
export function lostOutputMessage(lost: number, sent: number, worker: WorkerIdentity | undefined): string {
  const from = worker ? `worker ${shownWorker(worker)}` : 'its worker';
  return `${lost} of the ${sent} log line(s) and event(s) of this execution did not reach this host: lost on the way from ${from}, as when a connection to the NATS server drops while it runs`;
}

/**
 * A log line's message as the caller gets it: a `ctx.logger` one cut as on local backends (its
 * worker's runtime cuts its own; one forged, or of a worker of another version, reached onLog
 * whole). A captured stdout or stderr line is cut by the worker's own `maxLogLineLength`, which
 * this host does not know: it comes as it is.
 */
export function logMessageOf(body: LogBody): string {
  return body.stream === 'logger' ? hostLogMessage(body.message) : body.message;
}

/** A worker as messages name it, `id (host)`: its host name (any text, where its id is a token: startProblem) with its control characters written out. */
export function shownWorker(worker: WorkerIdentity | undefined): string {
  return `${worker?.id} (${shownControls(String(worker?.host), '')})`;
}

const isObject = (value: unknown): boolean => typeof value === 'object' && value !== null && !Array.isArray(value);

/** What a value read off the wire is, in words that quote none of it. */
function kindOf(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return `a string of ${value.length} character(s)`;
  if (typeof value === 'number') return Number.isFinite(value) ? 'a number' : String(value);
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

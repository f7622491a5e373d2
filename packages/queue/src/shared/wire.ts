import { randomUUID } from 'node:crypto';
import v8 from 'node:v8';
import { AbortedError, ValidationError, deserializeError, type ContextDescriptor, type LogEntry, type SerializedError } from '@kb-labs/plugin-execution-core';
import { MAX_EXECUTION_ID_LENGTH, deserializeLikeClone, refuseTaskWhatV8Loses, taskUnserializableError, unreadableMessageError, unserializableError } from '@kb-labs/plugin-execution-core/backend-kit';
import { headers as natsHeaders, type MsgHdrs } from '@nats-io/transport-node';

/**
 * The queue protocol's version: a worker refuses a task of another version (as a failed result
 * naming both, after the caller accepted its start, so nothing runs).
 */
export const QUEUE_PROTOCOL_VERSION = 2;

/** Header names. Values are short strings; bodies are `v8.serialize`d (Dates, Maps, BigInt, cycles survive). */
export const HEADER = {
  executionId: 'Kb-Exec-Id',
  kind: 'Kb-Kind',
  /**
   * The caller's subject: on a task, and on everything a host sends a worker (version 2), where
   * it and the execution id name one execution (two hosts may each have one of the same id).
   * Then, on a task: how long the caller waits without a heartbeat, and the protocol. (No
   * deadline: the caller's answer to `started` gives the time left, which no clock skews.)
   */
  reply: 'Kb-Reply',
  lostMs: 'Kb-Lost-Ms',
  protocol: 'Kb-Protocol',
  /** A part of a body sent in pieces: `index/count`, and the transfer it belongs to. */
  part: 'Kb-Part',
  transfer: 'Kb-Transfer',
  /** On a result: how many log lines and events its execution sent before it (see courier.ts, OutputTally). */
  outputSent: 'Kb-Output-Sent',
  /** On the reply to a part: the receiver's limit in bytes (its maxPayloadBytes), which the transfer passed; it was dropped. */
  refused: 'Kb-Refused',
} as const;

export type Kind = 'task' | 'started' | 'withdrawn' | 'input-wanted' | 'input-taken' | 'heartbeat' | 'log' | 'event' | 'rpc' | 'result' | 'cancel' | 'rpc-reply' | 'input';

/** Who runs an execution, as a worker says it in `started` and presence. */
export interface WorkerIdentity {
  id: string;
  host: string;
  pid: number;
}

/**
 * A task's id in the stream (its Nats-Msg-Id): its execution id and a nonce of this call, 48 random
 * bits from randomUUID's buffered bytes (randomBytes(6) made a call into the random source per
 * execution, ~10 µs of the host's CPU).
 */
export function newTaskId(executionId: string): string {
  return `${executionId}:${randomUUID().slice(-12)}`;
}

/** The longest task id a host makes (newTaskId of the longest execution id core takes). */
export const MAX_TASK_ID_LENGTH = MAX_EXECUTION_ID_LENGTH + 13;

/** The stream message: what a worker needs to run the handler from its own copy of the plugin. */
export interface TaskBody {
  executionId: string;
  pluginId: string;
  pluginVersion: string;
  handlerId: string;
  /** What the host's copy of the manifest declares for the handler (declaredPermissionsKey): a worker whose copy declares otherwise refuses it. */
  declaredPermissions?: string;
  /** Absent when `inputFollows`: the input is too large for one stream message and is sent after the start. */
  input?: unknown;
  inputFollows: boolean;
  context: ContextDescriptor;
  timeoutMs: number;
  /** Whether the execution gets a workspace (the host's `workspace` option is not false). */
  workspace: boolean;
  keepWorkspace: boolean;
  channel?: { connectionId: string; path: string };
  /** The W3C traceparent of the host's execution span: the worker's execution continues that trace. */
  traceparent?: string;
}

/** The task fields a worker acts on before the local backend checks the request, and the type each has as hosts send them. */
const TASK_FIELD_TYPES = { executionId: 'string', pluginId: 'string', pluginVersion: 'string', handlerId: 'string', inputFollows: 'boolean', workspace: 'boolean', keepWorkspace: 'boolean' } as const;

/**
 * `task` as hosts send it; a ValidationError naming the first field that is not (a peer's forgery:
 * each `workspace` value made the worker a local backend of its own, never shut down), or an
 * execution id other than its message's (`claim.id`, its Kb-Exec-Id header). A task of another
 * protocol is refused as such (taskRefusal), whatever its shape.
 */
export function taskOfShape(task: unknown, claim: { id: string; protocol: number }, where: string): TaskBody {
  const executionId = claim.id;
  if (claim.protocol !== QUEUE_PROTOCOL_VERSION) return task as TaskBody;
  const malformed = (what: string, path: string) => new ValidationError(`The task ${where} ${what}: not a task a host sends`, { details: { path, reason: 'malformed-task' } });
  if (typeof task !== 'object' || task === null) throw malformed(`is ${task === null ? 'null' : `a ${typeof task}`}, not an object`, 'task');
  const body = task as Record<string, unknown>;
  for (const [field, type] of Object.entries(TASK_FIELD_TYPES)) {
    if (typeof body[field] !== type) throw malformed(`has a ${field} that is a ${typeof body[field]}, not a ${type}`, field);
  }
  if (body.executionId !== executionId) throw malformed(`names execution "${String(body.executionId)}", its message "${executionId}"`, 'executionId');
  return task as TaskBody;
}

/**
 * The caller's answer to `started`. Accepted, with the time the execution has left by the
 * caller's clock: the worker counts it on its own from here, so that a worker whose clock is off
 * the caller's still stops the handler at the caller's deadline. Refused with `retry`: another
 * start of it is accepted, which may yet be withdrawn (that worker gave up waiting for its
 * answer): the task goes back to the stream, not away.
 */
export type StartedReply = { accept: true; remainingMs: number } | { accept: false; reason: string; retry?: boolean };

/** A caller's answer to `started`; one of another shape (a peer's forged reply, say) throws, as one that cannot be read does. */
export function decodeStartedReply(data: Uint8Array, where: string): StartedReply {
  const reply = decode<Record<string, unknown> | null>(data, 'The answer to started', where);
  const accepted = reply?.accept === true && typeof reply.remainingMs === 'number' && Number.isFinite(reply.remainingMs);
  if (typeof reply !== 'object' || reply === null || !(accepted || reply.accept === false)) {
    throw new Error(`The answer to started ${where} is not one a caller gives ({ accept: true, remainingMs } or { accept: false, reason })`);
  }
  return reply as StartedReply;
}

export interface HeartbeatBody {
  worker: string;
  executions: string[];
}

export interface LogBody {
  level: LogEntry['level'];
  message: string;
  fields?: Record<string, unknown>;
  stream: LogEntry['stream'];
}

const LOG_LEVELS: ReadonlySet<unknown> = new Set(['debug', 'info', 'warn', 'error']);
const LOG_STREAMS: ReadonlySet<unknown> = new Set(['logger', 'stdout', 'stderr']);

/** A log line as workers send it (a level and stream of LogEntry's, a text message). */
export function isLogBody(value: unknown): value is LogBody {
  const body = value as Record<string, unknown> | null;
  return typeof body === 'object' && body !== null && LOG_LEVELS.has(body.level) && LOG_STREAMS.has(body.stream) && typeof body.message === 'string' && (body.fields === undefined || (typeof body.fields === 'object' && body.fields !== null));
}

/** The end of an execution on a worker, with what `meta` needs from there. */
export type ResultBody = ({ ok: true; data: unknown } | { ok: false; error: SerializedError }) & {
  meta: { artifacts: string[]; artifactsTruncated?: true; workspaceDir?: string; pid?: number; threadId?: number };
};

export interface CancelBody {
  reason: SerializedError;
}

/** Presence: a worker's own description, every heartbeat. */
export interface PresenceBody extends WorkerIdentity {
  concurrency: number;
  running: number;
  /** How often it says this (its `heartbeatMs`). */
  heartbeatMs: number;
  backend: string;
  isolation?: { active: string; layers: string[]; reason: string };
  closing?: boolean;
  /** The plugin versions it runs, as `id@version` (see PeerPlugins): absent from workers before it was added. */
  plugins?: string[];
  /** It takes no new task (it drains before it closes): its peers do not wait for it. */
  draining?: boolean;
}

/**
 * Encode a body; a value that cannot be serialised is a ValidationError naming `what` and, given
 * `named` (the part of the body `what` names, such as a task's input), where in it the refused value is.
 */
export function encode(value: unknown, what: string, named?: unknown): Uint8Array {
  try {
    return v8.serialize(value);
  } catch (error) {
    throw unserializableError(what, error, named);
  }
}

/** A task's body: what v8's serialiser refuses in it is named as the input or the context, whichever holds it. */
export function encodeTask(body: TaskBody): Uint8Array {
  // What v8's serialiser would write as {} (a CryptoKey on Node 22): refused, as the input a handler would not get.
  refuseTaskWhatV8Loses(body);
  try {
    return v8.serialize(body);
  } catch (error) {
    throw taskUnserializableError(error, body);
  }
}

/**
 * Decode a body. One that cannot be read here is a ValidationError naming `what` and `where`
 * (`unreadable-message`, core's unreadableMessageError): a value only a newer Node reads (a
 * Float16Array, from Node 24 on) from a host or worker on that Node, or a value nested too deep.
 */
export function decode<T>(data: Uint8Array, what = 'A message', where = 'where it arrived'): T {
  try {
    return deserializeLikeClone(data) as T;
  } catch (error) {
    throw unreadableMessageError(what, where, error);
  }
}

/** Why a caller stopped an execution (a cancel's body); one that cannot be read here stops it all the same. */
export function cancelReason(body: Uint8Array): unknown {
  try {
    return deserializeError(decode<{ reason: unknown }>(body).reason);
  } catch {
    return new AbortedError('The calling host stopped this execution (its reason could not be read here)', { details: { phase: 'running' } });
  }
}

/** A message's headers. Made fresh, each name once: appended (set() first looks for the name to replace). */
export function makeHeaders(kind: Kind, executionId?: string, caller?: string): MsgHdrs {
  const h = natsHeaders();
  h.append(HEADER.kind, kind);
  if (executionId !== undefined) h.append(HEADER.executionId, executionId);
  if (caller !== undefined) h.append(HEADER.reply, caller);
  return h;
}

/** The headers read from messages: ours, and the task's id in the stream (its Nats-Msg-Id, pool-stream.ts). */
const READ_HEADERS = { ...HEADER, msgId: 'Nats-Msg-Id' } as const;

/** The headers a message carries (each one's first value), by field of READ_HEADERS; undefined where it has none. */
export type WireHeaders = { -readonly [K in keyof typeof READ_HEADERS]: string | undefined };

/**
 * A message's headers of ours, read in one pass over them: MsgHdrs.get() lists and filters every
 * name the message has for each name it is asked, and a message is read for three or four.
 */
export function readHeaders(msg: { readonly headers?: MsgHdrs }): WireHeaders {
  const read: WireHeaders = { executionId: undefined, kind: undefined, reply: undefined, lostMs: undefined, protocol: undefined, part: undefined, transfer: undefined, outputSent: undefined, refused: undefined, msgId: undefined };
  const headers = headersOf(msg);
  if (headers === undefined) return read;
  for (const [name, values] of headers) {
    const field = FIELD_OF_HEADER.get(name);
    if (field !== undefined && read[field] === undefined) read[field] = values[0];
  }
  return read;
}

/**
 * A message's headers, or undefined for those nats.js cannot decode: it decodes them when first
 * read, and throws on a value with a lone line feed (which a client writing the protocol itself
 * may send, and the server passes on). Thrown in a subscription's callback, that would end the
 * connection's reader for good: the connection, still up, would read nothing more.
 */
export function headersOf(msg: { readonly headers?: MsgHdrs }): MsgHdrs | undefined {
  try {
    return msg.headers;
  } catch {
    return undefined;
  }
}

const FIELD_OF_HEADER = new Map(Object.entries(READ_HEADERS).map(([field, name]) => [name as string, field as keyof typeof READ_HEADERS]));

/** A task's headers: its caller, how long that caller waits without a heartbeat, and the protocol. */
export function taskHeaders(executionId: string, caller: string, lostMs: number): MsgHdrs {
  const h = makeHeaders('task', executionId, caller);
  h.append(HEADER.lostMs, String(lostMs));
  h.append(HEADER.protocol, String(QUEUE_PROTOCOL_VERSION));
  return h;
}

/** What names one execution on a worker: its caller's subject and its id (a host's ids are its own). */
export function executionKey(caller: string, executionId: string): string {
  return `${caller} ${executionId}`;
}

/** `what` and its verb: "The input is", "The platform.a.b arguments are". */
export function namedAs(what: string): string {
  return `The ${what} ${what.endsWith('arguments') ? 'are' : 'is'}`;
}

/** A byte count people read: `20 MiB`, `1.5 MiB`, `512 KiB`. */
export function formatBytes(bytes: number, against?: number): string {
  // A size said beside a limit it would read the same as ("20 MiB, over … 20 MiB") is said exactly.
  if (against !== undefined && against !== bytes && formatBytes(bytes) === formatBytes(against)) return `${bytes} bytes`;
  if (bytes >= 1024 * 1024) return `${Number((bytes / (1024 * 1024)).toFixed(1))} MiB`;
  if (bytes >= 1024) return `${Number((bytes / 1024).toFixed(1))} KiB`;
  return `${bytes} bytes`;
}

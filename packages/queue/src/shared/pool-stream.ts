import { DiscardPolicy, RetentionPolicy, StorageType, type JetStreamManager, type StreamConfig, type StreamInfo } from '@nats-io/jetstream';
import { nanos, type Msg, type MsgHdrs } from '@nats-io/transport-node';
import type { ReplyInbox } from './reply-inbox.js';
import { messageOf, notPermitted } from './connection.js';
import { ownerOfStream, type PoolSubjects } from './subjects.js';

/** The stream's settings a host decides. */
export interface StreamSettings {
  /** Tasks waiting in the pool at most (`max_msgs`, `discard: new`): one more is refused by the server. */
  maxMessages: number;
  /** Largest stream message, headers included (JetStream counts them): the server's `max_payload`. */
  maxMessageBytes: number;
  storage: 'memory' | 'file';
  /** Copies in a JetStream cluster (`num_replicas`), when the stream is made; a worker makes it with 1. */
  replicas?: number;
}

/** The stream's description says who made it: a host's settings replace a worker's (see ensureStream). */
const MADE_BY_WORKER = 'kb-plugin-exec pool tasks (made by a worker, with default settings)';
const MADE_BY_HOST = 'kb-plugin-exec pool tasks';

function streamConfig(subjects: PoolSubjects, settings: StreamSettings, madeBy: 'host' | 'worker'): Partial<StreamConfig> & { name: string } {
  return {
    name: subjects.stream,
    description: madeBy === 'worker' ? MADE_BY_WORKER : MADE_BY_HOST,
    subjects: [subjects.tasks],
    retention: RetentionPolicy.Workqueue,
    max_msgs: settings.maxMessages,
    discard: DiscardPolicy.New,
    max_msg_size: settings.maxMessageBytes,
    storage: settings.storage === 'file' ? StorageType.File : StorageType.Memory,
    num_replicas: settings.replicas ?? 1,
    duplicate_window: nanos(DUPLICATE_WINDOW_MS),
  };
}

/** The pool's stream as read (or made): how it keeps tasks, how many wait, and its bound. */
export interface PoolStream {
  storage: 'memory' | 'file';
  messages: number;
  maxMessages: number;
  /** The sequence numbers of the messages it holds, first to last (0 and 0: made empty just now). */
  firstSeq: number;
  lastSeq: number;
  /** The stream's max_age in ms as it was read (0: none), before a host removed it: tasks older than that were dropped by the server. */
  maxAgeMs: number;
  /** The stream dropped its oldest task for a new one when full (`discard: old`, set by hand), as it was read, before a host set it back. */
  discardOld: boolean;
  /** The stream's max_bytes (-1: none): a publish past it is refused. */
  maxBytes: number;
  /** The bound a host asked for, where it was not set: more tasks wait than it allows (see ensureStream). */
  boundHeld?: { wanted: number; waiting: number };
  /** When the server made the stream (its `created`): a stream made anew counts its messages from 1 again. */
  created?: string;
  /** Its copies in a JetStream cluster (`num_replicas`; 1 on a single server). */
  replicas: number;
  /** The consumers it allows (`max_consumers`, -1: as many as the account does) and has, as read. */
  maxConsumers: number;
  consumers: number;
}

/** A duplicate publish (same execution id) within this window is dropped by the server. */
const DUPLICATE_WINDOW_MS = 120_000;

/**
 * Settings every host wants the same, which a stream made by hand (or by another tool) may lack:
 * `max_age` expires waiting tasks, `max_msgs_per_subject` and `discard: old` drop the oldest (every
 * task has the one subject; a full stream drops a waiting task for the new one), a `max_age` under 2 minutes shortened the duplicate window with it (the server
 * requires it), and `no_ack` confirms no publish (a host knows a task is in the pool, or refused
 * for the bound, only by the server's confirmation). A host sets them whenever it reads the stream. A `max_bytes` is left: with
 * `discard: new` it refuses a task (QUEUE_FULL naming it) and drops none, and an account may
 * require one.
 */
const SAME_FOR_EVERY_HOST = { max_age: 0, max_msgs_per_subject: -1, discard: DiscardPolicy.New, duplicate_window: nanos(DUPLICATE_WINDOW_MS), no_ack: false } as const;
const NOT_REPORTED: Record<string, unknown> = { max_age: 0, max_msgs_per_subject: -1, no_ack: false };

/**
 * Make the pool's work-queue stream if it is missing, and check one that exists: one not made as
 * a work queue on the pool's task subject is an error naming what to do. `as`:
 * - `worker`: makes it with default settings when missing, and never changes it;
 * - `host`: makes it with its settings, or brings the bound and message size of an existing one to
 *   them (a host owns the bound; the last host to start with another one sets it for the pool),
 *   but never lowers the bound while tasks wait in it (`boundHeld`);
 * - `host-check` (a host's periodic look): makes it again if it is gone (an operator deleted it,
 *   a server restarted without its store) and takes over one a worker made meanwhile, but leaves
 *   another host's bound alone.
 * Both host reads set what every host wants the same (SAME_FOR_EVERY_HOST). The storage is fixed
 * when the stream is made, by whoever came first.
 */
export async function ensureStream(jsm: JetStreamManager, subjects: PoolSubjects, settings: StreamSettings, as: 'host' | 'host-check' | 'worker'): Promise<PoolStream> {
  const config = streamConfig(subjects, settings, as === 'worker' ? 'worker' : 'host');
  let info;
  try {
    info = await jsm.streams.info(subjects.stream);
  } catch (error) {
    if (!isMissing(error)) throw error;
    info = await addOrRead(jsm, config).catch((refused: unknown) => {
      // With the users docs/backends/queue.md recommends, only hosts make the stream.
      if (as !== 'worker' || !notPermitted(refused)) throw refused;
      throw new PoolStreamError(
        `The stream ${subjects.stream} of pool "${subjects.pool}" does not exist yet, and this worker's NATS user may not make it (${messageOf(refused)}): ` +
          'start a host of the pool first (it makes the stream), then the worker',
        'not-permitted',
      );
    });
    if ('made' in info) return { storage: settings.storage, messages: 0, maxMessages: settings.maxMessages, firstSeq: 0, lastSeq: 0, maxAgeMs: 0, maxBytes: -1, discardOld: false, created: info.made, replicas: settings.replicas ?? 1, maxConsumers: -1, consumers: 0 };
  }
  const current = info.config;
  const wrong = wrongShape(subjects, current);
  if (wrong) throw new PoolStreamError(wrong);
  const read = { storage: storageOf(current), messages: info.state.messages, maxMessages: current.max_msgs, firstSeq: info.state.first_seq, lastSeq: info.state.last_seq, maxAgeMs: millis(current.max_age ?? 0), maxBytes: current.max_bytes ?? -1, discardOld: current.discard === DiscardPolicy.Old, created: info.created, replicas: current.num_replicas ?? 1, maxConsumers: current.max_consumers ?? -1, consumers: info.state.consumer_count ?? 0 };
  if (as === 'worker') return read;
  const takeOver = as === 'host' || current.description === MADE_BY_WORKER;
  // The server keeps a lower max_msgs by dropping the oldest waiting tasks (discard: new or not),
  // other hosts' accepted tasks among them, and more may be published between this read and the
  // update: not lowered while any wait (-1 is no bound at all).
  const held = takeOver && info.state.messages > 0 && config.max_msgs! < (current.max_msgs < 0 ? Infinity : current.max_msgs);
  const bound = held ? current.max_msgs : config.max_msgs!;
  const boundHeld = held ? { wanted: config.max_msgs!, waiting: info.state.messages } : undefined;
  // Copies are raised to the host's, never lowered: a stream made by hand with more keeps them.
  const copies = config.num_replicas! > (current.num_replicas ?? 1) ? { num_replicas: config.num_replicas! } : {};
  const owned = takeOver ? { description: config.description!, max_msgs: bound, max_msg_size: config.max_msg_size!, discard: config.discard!, ...copies } : {};
  const wanted: Partial<StreamConfig> = { ...SAME_FOR_EVERY_HOST, ...owned };
  const reported = current as unknown as Record<string, unknown>;
  // A server that does not report a limit does not have it.
  const differs = Object.entries(wanted).some(([key, value]) => (reported[key] ?? NOT_REPORTED[key]) !== value);
  // The pool's subject only: another subject on it (`other.>`) would put what is published there in the work queue.
  const widened = (current.subjects ?? []).length !== 1;
  if (!differs && !widened) return { ...read, boundHeld };
  await jsm.streams.update(subjects.stream, { ...current, ...wanted, subjects: [subjects.tasks] });
  return { ...read, maxMessages: wanted.max_msgs ?? current.max_msgs, boundHeld, replicas: wanted.num_replicas ?? read.replicas };
}

/** A JetStream duration (ns) in ms. */
function millis(nanoseconds: number): number {
  return Math.round(nanoseconds / 1_000_000);
}

/**
 * Make the stream; `made`, its `created`, when this call made it. Hosts and workers of a new pool often start
 * together, each finding it missing: the server refuses all but the first one's `add` (another
 * configuration, or "subjects overlap"), and the losers read and check the one that was made.
 */
async function addOrRead(jsm: JetStreamManager, config: Partial<StreamConfig> & { name: string }): Promise<StreamInfo | { made: string }> {
  try {
    return { made: (await jsm.streams.add(config)).created };
  } catch (error) {
    try {
      return await jsm.streams.info(config.name);
    } catch {
      throw error;
    }
  }
}

function storageOf(config: StreamConfig): 'memory' | 'file' {
  return config.storage === StorageType.File ? 'file' : 'memory';
}

/** The stream does not exist (JetStream's "stream not found"); anything else (no JetStream, no permission, no answer) is not that. */
function isMissing(error: unknown): boolean {
  return /stream not found/i.test(String((error as Error)?.message ?? error)) || (error as { api_error?: { err_code?: number } })?.api_error?.err_code === 10059;
}

/** A stream or consumer of the pool's name that exists but cannot serve as the pool's (made by hand, or by another tool), or that a worker may not make. */
export class PoolStreamError extends Error {
  override name = 'PoolStreamError';
  constructor(
    message: string,
    /** What QueueServerError.problem it is: `misconfigured`, or `not-permitted` for a stream its user may not make. */
    readonly problem: 'misconfigured' | 'not-permitted' = 'misconfigured',
  ) {
    super(message);
  }
}

/**
 * Why a stream of the pool's name that exists already (made by hand, or by another tool) cannot
 * be the pool's work queue, or undefined: it must be a work queue (each task to one worker, gone
 * once taken) on the pool's task subject.
 */
function wrongShape(subjects: PoolSubjects, config: StreamConfig): string | undefined {
  const fix = `delete it while the pool is idle (nats stream rm ${subjects.stream}) and the next host makes it as the pool needs`;
  if (config.sealed) return `The stream ${subjects.stream} is sealed: it takes no new task, and a taken one cannot be removed; ${fix}`;
  // What another stream holds would be tasks of the pool, read by whoever pulls them.
  if (config.mirror) return `The stream ${subjects.stream} mirrors the stream ${config.mirror.name}: its messages would be the pool's tasks; ${fix}`;
  if (config.sources?.length) {
    return `The stream ${subjects.stream} takes in the messages of other streams (${config.sources.map((source) => source.name).join(', ')}): they would be the pool's tasks; ${fix}`;
  }
  // An update cannot remove it: the server refuses to change a republish.
  if (config.republish) return `The stream ${subjects.stream} republishes what it stores to ${config.republish.dest}: every task's input would be copied there; ${fix}`;
  // Nor a deny_delete (the server refuses to cancel it): a host takes the tasks of executions that will never run off the stream.
  if (config.deny_delete) {
    return `The stream ${subjects.stream} denies message deletes (deny_delete): the tasks of executions that will never run (timed out, stopped) could not be taken off it and would hold places under its bound; ${fix}`;
  }
  if (config.retention !== RetentionPolicy.Workqueue) {
    return `The stream ${subjects.stream} has retention "${config.retention}", not "workqueue": taken tasks would stay in it and fill its bound; ${fix}`;
  }
  const owner = (config.subjects ?? []).map((taken) => ownerOfStream(subjects, taken)).find((found) => found !== undefined);
  if (owner && !(config.subjects ?? []).includes(subjects.tasks)) {
    return (
      `The stream ${subjects.stream} belongs to subject prefix "${owner.prefix}" and pool "${owner.pool}" (its subject ${owner.prefix}.${owner.pool}.tasks), ` +
      `not to subject prefix "${subjects.prefix}" and pool "${subjects.pool}": another deployment uses it, or used it and left it (a stream's name is the prefix upper-cased, "." as "_", then the pool). ` +
      `Choose a subjectPrefix or pool whose stream name differs from ${subjects.stream}`
    );
  }
  if (!(config.subjects ?? []).includes(subjects.tasks)) {
    return `The stream ${subjects.stream} does not take the pool's task subject ${subjects.tasks} (its subjects: ${(config.subjects ?? []).join(', ') || 'none'}); ${fix}`;
  }
  return undefined;
}

/**
 * Why the pool's stream does not keep tasks the way `wanted` asks, or undefined. A stream's
 * storage cannot change; a worker, or a host with other options, that made it first decided it.
 */
export function storageProblem(subjects: PoolSubjects, wanted: 'memory' | 'file', actual: 'memory' | 'file'): string | undefined {
  if (wanted !== 'file' || actual === 'file') return undefined;
  return (
    `streamStorage 'file' is not in effect: the stream ${subjects.stream} was made with memory storage (by a worker or a host that started first), ` +
    'and NATS cannot change a stream\'s storage, so waiting tasks do not survive a server restart. Delete the stream while the pool is idle ' +
    `(nats stream rm ${subjects.stream}); the next host makes it with file storage`
  );
}

/** A host's queueBound not set because more tasks wait (PoolStream.boundHeld): said once per process, as a warning. */
let boundHeldSaid = false;
export function warnBoundHeld(subjects: PoolSubjects, stream: PoolStream): void {
  if (!stream.boundHeld || boundHeldSaid) return;
  boundHeldSaid = true;
  const { wanted, waiting } = stream.boundHeld;
  process.emitWarning(
    `queueBound ${wanted} is not in effect for pool "${subjects.pool}": ${waiting} tasks wait in its stream ${subjects.stream}, and the server would drop the oldest of them ` +
      `to keep a lower bound, so it stays ${stream.maxMessages < 0 ? 'unbounded' : stream.maxMessages}; a host that starts with ${wanted} while none waits sets it`,
    { code: 'KB_PLUGIN_QUEUE_BOUND' },
  );
}

/** What the stream said of a task it stored: its sequence, and whether it had the same msg id already (dropped). */
export interface StoredTask {
  seq: number;
  duplicate: boolean;
}

/**
 * Publish a task to the stream and read the server's acknowledgement, as JetStream's publish does
 * (a request to the stream's subject, answered with `{ stream, seq, duplicate }` or `{ error }`),
 * through the connection's ReplyInbox: nats.js's publish would make an Error per task (see there).
 * Rejects with the server's own description of a refusal ("maximum messages exceeded"), or, when
 * no stream takes the subject, with one that says so ("no responders").
 */
export async function publishToStream(replies: ReplyInbox, subject: string, body: Uint8Array, o: { msgId: string; headers: MsgHdrs; timeout: number }): Promise<StoredTask> {
  o.headers.set('Nats-Msg-Id', o.msgId);
  let answer: Msg;
  try {
    answer = await replies.request(subject, body, { headers: o.headers, timeout: o.timeout });
  } catch (error) {
    const nobody = (error as { isNoResponders?: () => boolean })?.isNoResponders?.() === true;
    throw nobody ? new Error(`no stream takes subject "${subject}" (no responders)`, { cause: error }) : error;
  }
  let ack: { stream?: string; seq?: number; duplicate?: boolean; error?: { code?: number; err_code?: number; description?: string } };
  try {
    ack = JSON.parse(new TextDecoder().decode(answer.data));
  } catch {
    throw new Error(`the server's answer to a task published on "${subject}" is not JetStream's acknowledgement`);
  }
  if (ack.error) throw Object.assign(new Error(ack.error.description ?? `JetStream refused the task (code ${ack.error.code})`), { code: ack.error.code, errCode: ack.error.err_code });
  if (!ack.stream || typeof ack.seq !== 'number') throw new Error(`the server's answer to a task published on "${subject}" is not JetStream's acknowledgement`);
  return { seq: ack.seq, duplicate: ack.duplicate === true };
}

import { QueueFullError, WorkerCrashedError } from '@kb-labs/plugin-execution-core';

/** How long a publish waits for the stream's acknowledgement. */
export const PUBLISH_TIMEOUT_MS = 5000;
/** How long a task may take to be handed over, waits for a reconnection and retries included. */
const HAND_OVER_MS = 2 * PUBLISH_TIMEOUT_MS;
/**
 * The same for a stream with copies in a JetStream cluster: losing the server that leads it, the
 * others elect a new leader first. A follower waits 4–9 s (nats-server's raft election timeout,
 * random) before it campaigns: 20 s takes a full wait, a second round and the answer (about 5 s
 * on a quiet loopback cluster; over 10 s seen under load).
 */
const REPLICATED_HAND_OVER_MS = 4 * PUBLISH_TIMEOUT_MS;
/** How long a task may take to be handed over: the longer bound for a stream with copies. */
export function handOverBound(replicated: boolean): number {
  return replicated ? REPLICATED_HAND_OVER_MS : HAND_OVER_MS;
}

/** What a host knows of its pool when the server refuses a task: for the QUEUE_FULL it becomes. */
export interface RefusalContext {
  pool: string;
  stream: string;
  /** The stream's bound (max_msgs) as last read. */
  queueBound: number;
  /** The stream's max_bytes as last read (-1: none). */
  maxBytes: number;
  details: { maxQueue: number; active: number; concurrency: number };
}

/**
 * A task the stream refused for lack of room, as QUEUE_FULL naming the limit that refused it, or
 * undefined for any other refusal. JetStream says which in its words (err_code 10077 "maximum …
 * exceeded" for the stream's own limits, 10023/10028/10047 "insufficient … resources" for the
 * server's storage, "resource limits exceeded for account" for the account's); nothing was stored,
 * so nothing ran.
 */
export function fullQueue(error: unknown, at: RefusalContext): QueueFullError | undefined {
  const message = String((error as Error)?.message ?? error);
  const full = (what: string) => new QueueFullError(`${what}; nothing ran`, { details: at.details });
  if (/insufficient (storage |memory )?resources/i.test(message)) {
    return full(`The NATS server has no room left for the tasks of pool "${at.pool}" (${message}: its JetStream max_memory_store or max_file_store is used up)`);
  }
  if (/resource limits exceeded for account/i.test(message)) {
    return full(`The NATS account has no room left for the tasks of pool "${at.pool}" (${message}: its JetStream max_mem or max_file is used up)`);
  }
  if (/maximum messages exceeded/i.test(message)) {
    // The stream's own bound: another host may have set another (the last to start sets it).
    return full(`The queue of pool "${at.pool}" is full: ${at.queueBound} executions wait for a worker (the stream's queueBound)`);
  }
  if (/maximum bytes exceeded/i.test(message)) {
    const limit = at.maxBytes > 0 ? `${at.maxBytes} bytes, ` : '';
    return full(`The queue of pool "${at.pool}" is full: the tasks waiting for a worker fill the stream's max_bytes (${limit}set on ${at.stream} by hand, not by a host)`);
  }
  if (/maximum .* exceeded/i.test(message)) {
    return full(`The stream ${at.stream} of pool "${at.pool}" refused the task: ${message} (a limit set on it by hand, not by a host)`);
  }
  return undefined;
}

/**
 * A task the server did not take or confirm, as the WORKER_CRASHED (phase `queued`) it becomes:
 * whether the server stored it or not, no worker runs it (a start is accepted only from an
 * execution still waiting). nats.js says only "timeout": what waited, how long, and what it means.
 */
export function notHandedOver(error: unknown, at: { servers: string; waitedMs: number; streamProblem: string | undefined }): WorkerCrashedError {
  const message = String((error as Error)?.message ?? error);
  const timedOut = /^timeout$/i.test(message.trim());
  // Unconfirmed with the stream known not to answer: that is why, not a cut link.
  const said = timedOut ? `the server did not confirm the task in time (${at.waitedMs} ms at most, one retry)${at.streamProblem ? '' : ": this host's link to it may be cut; no worker will run it"}` : message;
  const why = at.streamProblem ? `${said} (${at.streamProblem})` : said;
  const cause = error instanceof Error ? { cause: error } : {};
  return new WorkerCrashedError(`Could not hand the execution to the NATS server (${at.servers}): ${why}`, { details: { reason: 'runner-lost', phase: 'queued', message }, ...cause });
}

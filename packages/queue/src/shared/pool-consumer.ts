import { AckPolicy, type ConsumerConfig, type JetStreamManager } from '@nats-io/jetstream';
import { nanos } from '@nats-io/transport-node';
import { PoolStreamError } from './pool-stream.js';
import type { PoolSubjects } from './subjects.js';

/** A waiting task a worker fetched but never answered for (it died before `started`) is redelivered after this. */
export const ACK_WAIT_MS = 5000;
/** How long one pull request of a worker waits for tasks before the server ends it (408) and it is renewed. */
export const PULL_EXPIRES_MS = 5000;

/** What the consumer must allow: the tasks its stream holds (its bound), and the largest pull request of a worker (its concurrency). */
export interface PoolNeeds {
  maxMessages: number;
  largestPull: number;
  /** The stream's `max_consumers` (-1: none of its own) and the consumers it has, as last read (PoolStream). */
  maxConsumers?: number;
  consumers?: number;
}

/**
 * The pool's one durable pull consumer, shared by its workers: explicit acks, each task to one
 * worker, delivered as often as it is handed back (no max_deliver), and no cap on the tasks out
 * unacknowledged (max_ack_pending). Made when missing; one that exists is checked (consumerProblem).
 */
export async function ensureConsumer(jsm: JetStreamManager, subjects: PoolSubjects, pool: PoolNeeds): Promise<void> {
  let config;
  try {
    config = (await jsm.consumers.info(subjects.stream, subjects.consumer)).config;
  } catch {
    const made = { durable_name: subjects.consumer, ack_policy: AckPolicy.Explicit, ack_wait: nanos(ACK_WAIT_MS), max_ack_pending: -1 };
    // Another worker making it at the same moment makes the same one, which the server accepts;
    // one it refuses (made otherwise meanwhile) is read and checked below.
    try {
      await jsm.consumers.add(subjects.stream, made);
      return;
    } catch (error) {
      config = await jsm.consumers.info(subjects.stream, subjects.consumer).then(
        (info) => info.config,
        (unread: unknown) => {
          const full = consumerNotFound(unread) ? noRoom(subjects, pool) : undefined;
          return Promise.reject(full ? new PoolStreamError(full) : error);
        },
      );
    }
  }
  const wrong = consumerProblem(subjects, config, pool);
  if (wrong) throw new PoolStreamError(wrong);
}

/**
 * Why the pool's consumer, as it exists, cannot serve the pool (made by hand, or by another tool:
 * workers could not pull from it, or would lose tasks), or undefined. A host reads it too, so that
 * its executions and health() say so instead of waiting for a worker that never comes.
 */
export async function checkConsumer(jsm: JetStreamManager, subjects: PoolSubjects, pool: PoolNeeds): Promise<string | undefined> {
  let config;
  try {
    config = (await jsm.consumers.info(subjects.stream, subjects.consumer)).config;
  } catch (error) {
    // Missing, as before a pool's first worker: no worker could make it in a stream with no room.
    // Unread otherwise (no answer in time, a cluster electing its leader, no permission), it may be
    // one of the consumers counted: nothing is said of it.
    return consumerNotFound(error) ? noRoom(subjects, pool) : undefined;
  }
  return consumerProblem(subjects, config, pool);
}

/** The consumer does not exist (JetStream's "consumer not found", 10014); a read that failed otherwise is not that. */
function consumerNotFound(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === 10014 || /consumer not found/i.test(String((error as Error | null)?.message ?? error));
}

/**
 * A stream made by hand with a `max_consumers` (which NATS cannot change) that other consumers
 * fill: the pool's consumer cannot be made, and the server's refusal ("maximum consumers limit
 * reached") reads as the account's limit. Said only where the pool's consumer is missing.
 */
function noRoom(subjects: PoolSubjects, { maxConsumers = -1, consumers = 0 }: PoolNeeds): string | undefined {
  if (maxConsumers <= 0 || consumers < maxConsumers) return undefined;
  return (
    `The stream ${subjects.stream} allows ${maxConsumers} consumer(s) (its max_consumers, set by hand, which NATS cannot change) and has ${consumers} already, ` +
    `none of them the pool's consumer ${subjects.consumer}, which its workers pull tasks from; delete the stream while the pool is idle (nats stream rm ${subjects.stream}) ` +
    'and the next host makes it as the pool needs'
  );
}

/**
 * What in the consumer's settings the pool cannot work with, first found. Its `ack_wait` is not
 * checked: no value of it loses a task (docs/backends/queue.md).
 */
function consumerProblem(subjects: PoolSubjects, config: Partial<ConsumerConfig>, pool: PoolNeeds): string | undefined {
  const wrong = config.deliver_subject
    ? 'is a push consumer (workers pull)'
    : config.ack_policy !== AckPolicy.Explicit
      ? `acknowledges "${String(config.ack_policy)}", not "explicit"`
      : (filterProblem(subjects, config) ?? limitProblem(config, pool));
  return wrong && `The consumer ${subjects.consumer} of stream ${subjects.stream} ${wrong}; delete it (nats consumer rm ${subjects.stream} ${subjects.consumer}) and the next worker makes it as the pool needs`;
}

function filterProblem(subjects: PoolSubjects, config: Partial<ConsumerConfig>): string | undefined {
  const filters = [config.filter_subject, ...(config.filter_subjects ?? [])].filter((filter): filter is string => !!filter && filter !== subjects.tasks);
  return filters.length > 0 ? `takes only ${filters.join(', ')}, not the pool's task subject ${subjects.tasks}` : undefined;
}

/** The pull requests the pool's consumer lets wait at once (the server's default): one for each worker of a large pool. */
const MIN_WAITING = 512;

/** Limits that lose tasks or stop workers from pulling them; the pool's consumer has none of them. */
function limitProblem(config: Partial<ConsumerConfig>, { maxMessages, largestPull }: PoolNeeds): string | undefined {
  const { max_deliver: maxDeliver = -1, max_ack_pending: maxAckPending = -1, max_batch: maxBatch = 0, max_expires: maxExpires = 0 } = config;
  if (maxDeliver > 0) {
    return (
      `has max_deliver ${maxDeliver}: a task is delivered again each time a worker hands it back (for a worker that has its plugin version, ` +
      'during a rolling upgrade) or dies holding it, and one past that many deliveries would never run (its execution ends in a TIMEOUT while workers wait)'
    );
  }
  if (maxAckPending > 0 && (maxMessages < 0 || maxAckPending < maxMessages)) {
    return (
      `has max_ack_pending ${maxAckPending}, below the ${maxMessages < 0 ? 'unbounded number of' : maxMessages} tasks its stream holds (queueBound): tasks handed back for a busy worker that has ` +
      'their plugin version (a rolling upgrade) count against it, and once that many wait no other task reaches an idle worker'
    );
  }
  if (maxBatch > 0 && maxBatch < largestPull) {
    return `has max_batch ${maxBatch}: a worker asks for as many tasks as it has free slots (up to its concurrency, ${largestPull} here), and the server refuses a larger request`;
  }
  if (maxExpires > 0 && maxExpires < nanos(PULL_EXPIRES_MS)) {
    return `has max_expires ${Math.round(maxExpires / 1_000_000)} ms: a worker's pull request waits ${PULL_EXPIRES_MS} ms, and the server refuses it`;
  }
  if (config.headers_only) return 'delivers headers only: workers would get tasks without their bodies';
  const { max_waiting: maxWaiting = 0 } = config;
  if (maxWaiting > 0 && maxWaiting < MIN_WAITING) {
    return (
      `has max_waiting ${maxWaiting}: every worker keeps a pull request waiting, and the server refuses those past that many, so a task handed back ` +
      `(for a worker with its plugin version) can keep reaching the one worker that cannot run it while the others wait (a TIMEOUT); the pool's own has ${MIN_WAITING}`
    );
  }
  return undefined;
}

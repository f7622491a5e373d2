import { AckPolicy, DiscardPolicy, RetentionPolicy, StorageType, type JetStreamManager, type StreamConfig } from '@nats-io/jetstream';
import { nanos } from '@nats-io/transport-node';
import type { PoolSubjects } from './subjects.js';

/** The stream's settings a host decides. */
export interface StreamSettings {
  /** Tasks waiting in the pool at most (`max_msgs`, `discard: new`): one more is refused by the server. */
  maxMessages: number;
  /** Largest stream message (the server's `max_payload`). */
  maxMessageBytes: number;
  storage: 'memory' | 'file';
}

/** A waiting task a worker fetched but never answered for (it died before `started`) is redelivered after this. */
const ACK_WAIT_MS = 5000;

function streamConfig(subjects: PoolSubjects, settings: StreamSettings): Partial<StreamConfig> & { name: string } {
  return {
    name: subjects.stream,
    subjects: [subjects.tasks],
    retention: RetentionPolicy.Workqueue,
    max_msgs: settings.maxMessages,
    discard: DiscardPolicy.New,
    max_msg_size: settings.maxMessageBytes,
    storage: settings.storage === 'file' ? StorageType.File : StorageType.Memory,
    // A duplicate publish (same execution id) within this window is dropped by the server.
    duplicate_window: nanos(120_000),
  };
}

/**
 * Create the pool's work-queue stream, or bring its bound and message size to `settings` (a host
 * owns the bound; the last host to start with a different one sets it for the pool). A worker
 * only creates it when it is missing (`update: false`), so that it never changes a host's bound.
 * Resolves with the storage the stream has: fixed when it was made, by whoever came first.
 */
export async function ensureStream(jsm: JetStreamManager, subjects: PoolSubjects, settings: StreamSettings, update: boolean): Promise<'memory' | 'file'> {
  const config = streamConfig(subjects, settings);
  let info;
  try {
    info = await jsm.streams.info(subjects.stream);
  } catch {
    await jsm.streams.add(config);
    return settings.storage;
  }
  const current = info.config;
  if (update && (current.max_msgs !== config.max_msgs || current.max_msg_size !== config.max_msg_size || current.discard !== config.discard)) {
    await jsm.streams.update(subjects.stream, { ...current, max_msgs: config.max_msgs!, max_msg_size: config.max_msg_size!, discard: config.discard! });
  }
  return current.storage === StorageType.File ? 'file' : 'memory';
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

/** The pool's one durable pull consumer, shared by its workers: explicit acks, each task to one worker. */
export async function ensureConsumer(jsm: JetStreamManager, subjects: PoolSubjects): Promise<void> {
  try {
    await jsm.consumers.info(subjects.stream, subjects.consumer);
  } catch {
    await jsm.consumers.add(subjects.stream, {
      durable_name: subjects.consumer,
      ack_policy: AckPolicy.Explicit,
      ack_wait: nanos(ACK_WAIT_MS),
      max_ack_pending: -1,
    });
  }
}

import type { BackendOptions } from '@kb-labs/plugin-execution-core';
import { backendOptionsSchema, lazySchema, option, parseOptions } from '@kb-labs/plugin-execution-core/backend-kit';
import { connectionSchema, type NatsConnectionOptions } from '../shared/connection-options.js';
import { DEFAULT_POOL, DEFAULT_SUBJECT_PREFIX, checkStreamName, poolOption, subjectPrefixOption } from '../shared/subjects.js';

export const DEFAULT_MAX_PAYLOAD_BYTES = 20 * 1024 * 1024;

/**
 * Options of the queue backend: the common ones plus where the pool is. Two bounds apply, in
 * this order: core's admission on this host (`maxConcurrency` executions in flight from this
 * host, `maxQueue` more waiting here; both per host, they protect the host), then the pool's
 * stream (`queueBound` tasks waiting for a worker, counted by the server across every host: the
 * bound a burst from many hosts cannot overrun). Either refuses with QUEUE_FULL.
 *
 * The workspace lives on the worker: `workspace` here only says whether executions get one
 * (`false`: none); its root is the worker's (`startExecutionWorker({ workspace })`).
 */
export interface QueueBackendOptions extends BackendOptions {
  /** How to reach NATS: servers, auth (user/pass, token, NKey seed, creds file), TLS, name. @default { servers: 'nats://127.0.0.1:4222' } */
  connection?: NatsConnectionOptions | undefined;
  /** The worker pool to send executions to (a stream and consumer of their own). @default 'default' */
  pool?: string | undefined;
  /** First token(s) of every subject and of the stream name: separates deployments on one server. @default 'kbexec' */
  subjectPrefix?: string | undefined;
  /**
   * Tasks waiting in the pool for a worker, all hosts together: the stream's `max_msgs` with
   * `discard: new`, enforced by the server. One more execution gets QUEUE_FULL. @default 1000
   */
  queueBound?: number | undefined;
  /**
   * How often this host looks for started executions whose worker went silent (at least three
   * times per `workerLostMs`). How often workers report is each worker's own `heartbeatMs`
   * (`startExecutionWorker`), not this. @default 1000
   */
  heartbeatMs?: number | undefined;
  /** No heartbeat from the worker of a started execution for this long → WORKER_CRASHED (`details.reason: 'runner-lost'`). @default 3000 */
  workerLostMs?: number | undefined;
  /** Largest input, result, event or platform-call value, encoded; larger → VALIDATION_ERROR naming the limit. @default 20971520 (20 MiB) */
  maxPayloadBytes?: number | undefined;
  /**
   * Where the stream keeps waiting tasks. `memory`: a server restart drops them (their callers
   * have already been failed by then); `file`: they survive it, and a worker that claims one
   * whose caller gave up is refused at its start. @default 'memory'
   */
  streamStorage?: 'memory' | 'file' | undefined;
  /**
   * Copies of the pool's stream in a JetStream cluster (`num_replicas`; at most the cluster's
   * servers, 5 at most): with 3, the stream and its waiting tasks outlive one server of the three.
   * A host raises an existing stream's copies to this, never lowers them (a worker makes it with 1). @default 1
   */
  streamReplicas?: number | undefined;
}

export const queueOptionsSchema = lazySchema(() =>
  backendOptionsSchema().extend({
    connection: connectionSchema().optional(),
    pool: poolOption().optional(),
    subjectPrefix: subjectPrefixOption().optional(),
    queueBound: option.int(1, 100_000_000).optional(),
    heartbeatMs: option.int(50, 60_000).optional(),
    workerLostMs: option.int(100, 600_000).optional(),
    maxPayloadBytes: option.int(1024, 1024 * 1024 * 1024).optional(),
    streamStorage: option.oneOf(['memory', 'file'] as const).optional(),
    streamReplicas: option.int(1, 5).optional(),
  }),
);

export interface ResolvedQueueOptions {
  connection: NatsConnectionOptions;
  pool: string;
  subjectPrefix: string;
  queueBound: number;
  heartbeatMs: number;
  workerLostMs: number;
  maxPayloadBytes: number;
  streamStorage: 'memory' | 'file';
  streamReplicas: number;
  /** Executions get a workspace (on the worker). */
  workspace: boolean;
}

/** Validate every option (VALIDATION_ERROR naming each path) and fill in the defaults. */
export function resolveQueueOptions(options: QueueBackendOptions): ResolvedQueueOptions {
  const o = parseOptions(queueOptionsSchema(), options, 'queue backend options', true);
  const resolved: ResolvedQueueOptions = {
    connection: (o.connection ?? {}) as NatsConnectionOptions,
    pool: o.pool ?? DEFAULT_POOL,
    subjectPrefix: o.subjectPrefix ?? DEFAULT_SUBJECT_PREFIX,
    queueBound: o.queueBound ?? 1000,
    heartbeatMs: o.heartbeatMs ?? 1000,
    workerLostMs: o.workerLostMs ?? 3000,
    maxPayloadBytes: o.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES,
    streamStorage: o.streamStorage ?? 'memory',
    streamReplicas: o.streamReplicas ?? 1,
    workspace: o.workspace !== false,
  };
  checkStreamName(resolved.subjectPrefix, resolved.pool, 'queue backend options');
  return resolved;
}

import { settlesWithin } from '@kb-labs/plugin-execution-core/backend-kit';
import type { JetStreamManager } from '@nats-io/jetstream';
import type { PoolStream } from '../shared/pool-stream.js';

/** How long a read of the stream, or close(), waits for the deletes under way: a delete whose request a drop took waits out its timeout. */
const DELETES_WAIT_MS = 1000;

/** A task this host put in the pool's stream: its sequence there, its Nats-Msg-Id, and the stream's `created` as this host knew it then (PoolStream.created). */
export interface QueuedTask {
  seq: number;
  taskId: string;
  streamCreated: string | undefined;
}

/**
 * Takes the tasks of executions that will never run (stopped, or failed before any worker started
 * them) off the pool's stream, where each would hold a place under queueBound until a worker took
 * it and was refused. While the connection is down they are kept, and taken off once it is back.
 * A stream made anew (deleted by hand, a server restarted without its store) counts its messages
 * from 1 again, and another host's task may hold the sequence this host kept: a task is taken off
 * only from the stream it went to, or, the stream made anew since, only if it is still that
 * execution's task.
 */
export class StreamTasks {
  readonly #jsm: JetStreamManager;
  readonly #stream: string;
  readonly #later: QueuedTask[] = [];
  readonly #deleting = new Set<Promise<void>>();
  #reading: Promise<string | undefined> | undefined;

  constructor(jsm: JetStreamManager, stream: string) {
    this.#jsm = jsm;
    this.#stream = stream;
  }

  delete(task: QueuedTask, connected: boolean): void {
    if (!connected) return void this.#later.push(task);
    const deleting: Promise<void> = this.#deleteIfStill(task)
      .catch(() => undefined)
      .finally(() => this.#deleting.delete(deleting));
    this.#deleting.add(deleting);
  }

  /** Settles once the deletes under way are done (a read of the stream after it sees them gone), or after DELETES_WAIT_MS. */
  async settled(): Promise<void> {
    await settlesWithin(Promise.all([...this.#deleting]), DELETES_WAIT_MS);
  }

  /** The connection is back: what was kept goes now, each only if it is still that execution's task. */
  reconnected(): void {
    for (const kept of this.#later.splice(0)) this.delete(kept, true);
  }

  async #deleteIfStill(task: QueuedTask): Promise<void> {
    // The stream as it is now, not as this host last read it: made anew since, the task's sequence may be another host's task.
    if ((await this.#created()) !== task.streamCreated && (await this.holds(task)) !== true) return;
    await this.#jsm.streams.deleteMessage(this.#stream, task.seq, false);
  }

  /** Whether the stream's message at the task's sequence is that task (none there: false); undefined when the read fails. */
  holds(task: QueuedTask): Promise<boolean | undefined> {
    return this.#jsm.streams.getMessage(this.#stream, { seq: task.seq }).then(
      (stored) => stored?.header.get('Nats-Msg-Id') === task.taskId,
      () => undefined,
    );
  }

  /** The stream's `created`, one read shared by the deletes that ask at once (a burst of timeouts); undefined when the read fails. */
  #created(): Promise<string | undefined> {
    this.#reading ??= this.#jsm.streams
      .info(this.#stream)
      .then((info) => info.created, () => undefined)
      .finally(() => (this.#reading = undefined));
    return this.#reading;
  }
}

/** Why a task waited `waitedMs` in the stream is no longer there, no worker having taken it. */
export function taskGone(stream: Pick<PoolStream, 'maxAgeMs' | 'discardOld'>, waitedMs: number): string {
  // A max_age set on the stream by hand (the host removes it when it reads the stream) drops what waited that long.
  if (stream.maxAgeMs > 0 && waitedMs >= stream.maxAgeMs) {
    return `its task expired in the pool's stream before any worker took it (the stream's max_age, ${stream.maxAgeMs} ms, set on it by hand: this host has now removed it): it never ran`;
  }
  if (stream.discardOld) return `its task was dropped from the pool's stream, full, for a newer one before any worker took it (the stream's discard: old, set on it by hand: this host has now set discard: new): it never ran`;
  return `its task was removed from the pool's stream before any worker took it (the stream was purged, the message deleted, its max_msgs lowered below the tasks waiting, or the stream made anew): it never ran`;
}

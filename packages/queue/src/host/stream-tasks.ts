import type { JetStreamManager } from '@nats-io/jetstream';

/**
 * Takes the tasks of executions that will never run (stopped, or failed before any worker started
 * them) off the pool's stream, where each would hold a place under queueBound until a worker took
 * it and was refused. While the connection is down they are kept, and taken off once it is back,
 * each only from the same stream (one made anew, a server restarted without its store, counts its
 * messages from 1 again) and only if it is still that execution's task.
 */
export class StreamTasks {
  readonly #jsm: JetStreamManager;
  readonly #stream: string;
  readonly #later: Array<{ seq: number; taskId: string; created: string | undefined }> = [];

  constructor(jsm: JetStreamManager, stream: string) {
    this.#jsm = jsm;
    this.#stream = stream;
  }

  /** `taskId`: its Nats-Msg-Id; `created`: the stream's, as last read (PoolStream.created). */
  delete(seq: number, taskId: string, connected: boolean, created: string | undefined): void {
    if (!connected) return void this.#later.push({ seq, taskId, created });
    this.#jsm.streams.deleteMessage(this.#stream, seq, false).catch(() => undefined);
  }

  /** The connection is back, the stream read again (`created` now): what was kept goes now, from the same stream only. */
  async reconnected(created: string | undefined): Promise<void> {
    for (const kept of this.#later.splice(0)) {
      // Made anew (a caller may have sent its execution again under the same id since): not its task.
      if (kept.created !== created) continue;
      const task = await this.#jsm.streams.getMessage(this.#stream, { seq: kept.seq }).catch(() => null);
      if (task?.header.get('Nats-Msg-Id') === kept.taskId) this.delete(kept.seq, kept.taskId, true, created);
    }
  }
}

import type { JetStreamManager } from '@nats-io/jetstream';

/**
 * Takes the tasks of executions that will never run (stopped, or failed before any worker started
 * them) off the pool's stream, where each would hold a place under queueBound until a worker took
 * it and was refused. While the connection is down they are kept, and taken off once it is back,
 * each only if it is still that execution's task: a stream made anew (a server restarted without
 * its store) counts its messages from 1 again.
 */
export class StreamTasks {
  readonly #jsm: JetStreamManager;
  readonly #stream: string;
  readonly #later: Array<{ seq: number; executionId: string }> = [];

  constructor(jsm: JetStreamManager, stream: string) {
    this.#jsm = jsm;
    this.#stream = stream;
  }

  delete(seq: number, executionId: string, connected: boolean): void {
    if (!connected) return void this.#later.push({ seq, executionId });
    this.#jsm.streams.deleteMessage(this.#stream, seq, false).catch(() => undefined);
  }

  /** The connection is back: what was kept goes now. */
  async reconnected(): Promise<void> {
    for (const { seq, executionId } of this.#later.splice(0)) {
      const task = await this.#jsm.streams.getMessage(this.#stream, { seq }).catch(() => null);
      if (task?.header.get('Nats-Msg-Id') === executionId) this.delete(seq, executionId, true);
    }
  }
}

import type { Consumer, JsMsg } from '@nats-io/jetstream';

/** How long one pull request waits for tasks before it is renewed. */
const FETCH_EXPIRES_MS = 5000;
/** Pause after a failed pull (no server, no stream yet) before the next. */
const RETRY_MS = 500;

/**
 * Pulls tasks from the pool's consumer, never more than the worker has free slots for: a task
 * fetched and then left waiting in this process would wait past its acknowledgement window
 * (nats.go#1929) while another worker was idle. Every freed slot tops the pulls up again.
 */
export class TaskPuller {
  readonly #consumer: () => Promise<Consumer>;
  readonly #free: () => number;
  readonly #take: (msg: JsMsg) => void;
  readonly #pulls = new Set<{ close(): Promise<void | Error> }>();
  /** Slots covered by pull requests not yet answered. */
  #reserved = 0;
  #stopped = false;

  constructor(consumer: () => Promise<Consumer>, free: () => number, take: (msg: JsMsg) => void) {
    this.#consumer = consumer;
    this.#free = free;
    this.#take = take;
  }

  /** Ask for as many tasks as there are free slots not already asked for. */
  topUp(): void {
    if (this.#stopped) return;
    const wanted = this.#free() - this.#reserved;
    if (wanted <= 0) return;
    this.#reserved += wanted;
    void this.#pull(wanted);
  }

  async #pull(count: number): Promise<void> {
    let left = count;
    try {
      const consumer = await this.#consumer();
      if (this.#stopped) return;
      const messages = await consumer.fetch({ max_messages: count, expires: FETCH_EXPIRES_MS });
      this.#pulls.add(messages);
      try {
        for await (const msg of messages) {
          left--;
          this.#reserved--;
          if (!this.#stopped) this.#take(msg);
        }
      } finally {
        this.#pulls.delete(messages);
      }
    } catch {
      await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
    } finally {
      this.#reserved -= left;
      this.topUp();
    }
  }

  /**
   * Drop the pulls in flight and ask again, on a consumer got afresh: after a reconnection, a
   * pull made on a consumer the restarted server no longer has would wait out its expiry.
   */
  renew(): void {
    for (const pull of this.#pulls) void pull.close().catch(() => undefined);
  }

  /** Take nothing more; tasks delivered to a closed pull and never acknowledged go to another worker. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await Promise.all([...this.#pulls].map((pull) => pull.close().catch(() => undefined)));
  }
}

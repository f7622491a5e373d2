import { settlesWithin } from '@kb-labs/plugin-execution-core/backend-kit';

/**
 * What waits for a host's connection to come back (a task's hand-over): released once the
 * connection is back and ready (the pool's stream read again), or closed. The status watch does
 * not wait for that readiness: a drop while it is under way (a read of the stream that the drop
 * took waits out its timeout) is a drop at once, and what waits goes on waiting, for the next
 * reconnection.
 */
export class Reconnection {
  #back: Promise<void> = Promise.resolve();
  #release: () => void = () => {};
  #drops = 0;

  /** The connection dropped: what waits from now on waits for the next reconnection (what waited for the last one is woken to look again). */
  dropped(): void {
    this.#release();
    this.#drops++;
    this.#back = new Promise((resolve) => (this.#release = resolve));
  }

  /** How many times the connection has dropped so far. */
  get drops(): number {
    return this.#drops;
  }

  /** Settles once what waits is released (see dropped()), or after `ms`. */
  wait(ms: number): Promise<boolean> {
    return settlesWithin(this.#back, ms);
  }

  /** The connection is back: once `ready` settles, `then` runs and what waits is released, unless it dropped again meanwhile. */
  async back(ready: () => Promise<void>, then: () => void): Promise<void> {
    const drops = this.#drops;
    await ready();
    if (drops !== this.#drops) return;
    then();
    this.#release();
  }

  /** Closed: nothing waits for a reconnection any more. */
  release(): void {
    this.#release();
  }
}

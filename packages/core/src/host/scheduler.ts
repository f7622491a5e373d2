import { AbortedError, QueueFullError, type ExecutionError } from '../errors.js';
import { onAbort } from './abort-listeners.js';
import { LiveMap } from './live-list.js';

export interface SchedulerOptions {
  /** Executions running at once. */
  concurrency: number;
  /** Executions waiting at most; one more gets QUEUE_FULL at once. */
  maxQueue: number;
  /** Running executions per key (plugin) at most. @default unlimited */
  perKeyConcurrency?: number;
}

export interface Slot {
  /** Give the slot back; idempotent. */
  release(): void;
}

interface Waiter {
  key: string;
  /** Its place in the order of arrival, across keys. */
  seq: number;
  resolve: (slot: Slot) => void;
  reject: (error: ExecutionError) => void;
  done: boolean;
  cleanup?: () => void;
}

/** The waiters of one line, oldest first; those gone (aborted) are passed over, and swept out once they outnumber the rest. */
class WaitingLine {
  readonly key: string;
  /** Those passed are `undefined`: up to `#head`. */
  #items: Array<Waiter | undefined> = [];
  #head = 0;
  #live = 0;

  constructor(key: string) {
    this.key = key;
  }

  push(waiter: Waiter): void {
    this.#items.push(waiter);
    this.#live++;
  }

  /** The oldest still waiting. */
  first(): Waiter | undefined {
    const items = this.#items;
    // Those passed are let go at once (a waiter holds its execution's callbacks, and with them the execution).
    while (this.#head < items.length && items[this.#head]!.done) items[this.#head++] = undefined;
    return items[this.#head];
  }

  /** `first()` is leaving the line (granted). */
  shift(): void {
    this.#items[this.#head++] = undefined;
    this.#live--;
    // Cut once most of the array is behind the front.
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
  }

  /** One of it was aborted: out of the line now, not when it comes to the front (callers may give up by the thousand while a slot stays held). */
  left(): void {
    this.#live--;
    if (this.#items.length - this.#head > 2 * this.#live + 16) {
      this.#items = this.#items.slice(this.#head).filter((each) => each !== undefined && !each.done);
      this.#head = 0;
    }
  }

  *waiting(): Iterable<Waiter> {
    for (let i = this.#head; i < this.#items.length; i++) {
      const waiter = this.#items[i];
      if (waiter && !waiter.done) yield waiter;
    }
  }
}

/**
 * Admission control for a backend: a concurrency limit, an optional per-plugin cap and a bounded
 * FIFO queue. Aborted waiters leave the queue at once and never run. With a per-plugin cap each
 * plugin waits in a line of its own, and a free slot goes to the oldest waiter at the front of a
 * line whose plugin has room (one line for all without a cap): a slot freed never walks past the
 * thousands a capped plugin has waiting.
 */
export class Scheduler {
  readonly concurrency: number;
  readonly maxQueue: number;
  readonly perKeyConcurrency: number;
  #active = 0;
  #queued = 0;
  #arrivals = 0;
  /** Waiting lines by key (by plugin with a per-plugin cap; one line, '', without). */
  readonly #lines = new Map<string, WaitingLine>();
  /** Set by closeQueue(): what an execution that would have to wait gets from then on. */
  #closedWith: ExecutionError | undefined;
  /** Running executions per key: a LiveMap (live-list.ts), since a key comes and goes with its executions. */
  readonly #perKey = new LiveMap<number>();

  constructor(options: SchedulerOptions) {
    this.concurrency = options.concurrency;
    this.maxQueue = options.maxQueue;
    this.perKeyConcurrency = options.perKeyConcurrency ?? Number.POSITIVE_INFINITY;
  }

  /** Executions holding a slot. */
  get active(): number {
    return this.#active;
  }

  get queued(): number {
    return this.#queued;
  }

  /**
   * QUEUE_FULL for one more of `waiting` executions not yet admitted (`why` they wait), of `key`
   * (`waitingOfKey` of them), when it could neither run nor wait once they are admitted: those,
   * with the ones running and waiting for a slot here, already fill every slot and the queue; or
   * its key's cap is taken by its own running and waiting, and those over that cap fill the queue.
   */
  refuseBeyond(waiting: number, why: string, key: string, waitingOfKey: number): void {
    const admitted = this.#active + this.#queued;
    const here = admitted > 0 ? `, ${this.#active} running and ${this.#queued} waiting for a slot` : '';
    const capped = Number.isFinite(this.perKeyConcurrency);
    const details = { maxQueue: this.maxQueue, active: this.#active, concurrency: this.concurrency, ...(capped ? { perPluginConcurrency: this.perKeyConcurrency } : {}) };
    if (waiting + admitted >= this.concurrency + this.maxQueue) {
      throw new QueueFullError(`Queue is full (${waiting} ${why}${here}: ${this.concurrency} can run and ${this.maxQueue} wait)`, { details });
    }
    const ofKey = (this.#perKey.get(key) ?? 0) + waitingOfKey;
    if (!capped || ofKey < this.perKeyConcurrency || this.#queued + ofKey - this.perKeyConcurrency < this.maxQueue) return;
    throw new QueueFullError(`Queue is full (${waiting} ${why}, ${waitingOfKey} of them of plugin "${key}"${here}: its perPluginConcurrency, ${this.perKeyConcurrency}, can run and ${this.maxQueue} wait)`, {
      details,
    });
  }

  /** A slot now (synchronously, the fast path), or a promise of one; QUEUE_FULL / ABORTED otherwise. */
  acquire(key: string, signal?: AbortSignal): Slot | Promise<Slot> {
    return this.take(key, signal) ?? new Promise<Slot>((resolve, reject) => this.enqueue(key, signal, resolve, reject));
  }

  /** A slot now, or undefined when one must be waited for (`enqueue`); QUEUE_FULL / ABORTED otherwise. */
  take(key: string, signal?: AbortSignal): Slot | undefined {
    // An 'abort' listener added now would never fire: without this the waiter would stay queued.
    if (signal?.aborted) {
      throw new AbortedError('Execution aborted before it was queued; it never ran', { details: { phase: 'queued' } });
    }
    // Room for this key means no waiter can be passed over: every release pumps the queue, so
    // while a slot is free the only waiters left are those held back by their own key's cap.
    // (Checking `#queued === 0` here instead would let one capped key block every other key.)
    if (this.#hasRoom(key)) return this.#grant(key);
    if (this.#closedWith) throw this.#closedWith;
    if (this.#queued >= this.maxQueue) {
      // Held back by its plugin's own cap, not by the backend's: said, or a free slot would puzzle.
      const capped = this.#active < this.concurrency ? `; plugin "${key}" has its perPluginConcurrency, ${this.perKeyConcurrency}, running` : '';
      throw new QueueFullError(`Queue is full (${this.maxQueue} waiting, ${this.#active} running${capped})`, {
        details: { maxQueue: this.maxQueue, active: this.#active, concurrency: this.concurrency, ...(Number.isFinite(this.perKeyConcurrency) ? { perPluginConcurrency: this.perKeyConcurrency } : {}) },
      });
    }
    return undefined;
  }

  /**
   * Wait for a slot, after `take` found none: `granted` is called with it inside the release that
   * frees it (the next execution is on its way before anything else runs), `refused` with the
   * ABORTED or shutdown error that takes it out of the queue instead.
   */
  enqueue(key: string, signal: AbortSignal | undefined, granted: (slot: Slot) => void, refused: (error: ExecutionError) => void): void {
    const waiter: Waiter = { key, seq: this.#arrivals++, resolve: granted, reject: refused, done: false };
    const lineKey = Number.isFinite(this.perKeyConcurrency) ? key : '';
    let line = this.#lines.get(lineKey);
    if (!line) this.#lines.set(lineKey, (line = new WaitingLine(lineKey)));
    if (signal) {
      const abort = () => {
        if (waiter.done) return;
        waiter.done = true;
        this.#queued--;
        line.left();
        refused(new AbortedError('Execution aborted while queued; it never ran', { details: { phase: 'queued' } }));
      };
      waiter.cleanup = onAbort(signal, abort);
    }
    line.push(waiter);
    this.#queued++;
  }

  /** Reject everything still waiting, and from now on refuse with `error` whoever would have to wait (shutdown); free slots are still given. */
  closeQueue(error: ExecutionError): void {
    this.#closedWith = error;
    const waiting = [...this.#lines.values()].flatMap((line) => [...line.waiting()]).sort((a, b) => a.seq - b.seq);
    this.#lines.clear();
    this.#queued = 0;
    for (const waiter of waiting) {
      waiter.done = true;
      waiter.cleanup?.();
      waiter.reject(error);
    }
  }

  #hasRoom(key: string): boolean {
    return this.#active < this.concurrency && (this.#perKey.get(key) ?? 0) < this.perKeyConcurrency;
  }

  #grant(key: string): Slot {
    this.#active++;
    this.#perKey.set(key, (this.#perKey.get(key) ?? 0) + 1);
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.#active--;
        const left = (this.#perKey.get(key) ?? 1) - 1;
        if (left === 0) this.#perKey.delete(key);
        else this.#perKey.set(key, left);
        this.#pump();
      },
    };
  }

  #pump(): void {
    if (this.#queued === 0) {
      // Only the aborted are left, if anyone.
      if (this.#lines.size) this.#lines.clear();
      return;
    }
    // Told once the lines are settled: a waiter's own code (a dispatch that fails and gives its slot back) may pump again.
    const granted: Array<[Waiter, Slot]> = [];
    while (this.#queued > 0 && this.#active < this.concurrency) {
      const line = this.#lineToServe();
      if (!line) break;
      const waiter = line.first()!;
      line.shift();
      waiter.done = true;
      waiter.cleanup?.();
      this.#queued--;
      granted.push([waiter, this.#grant(waiter.key)]);
    }
    for (const [waiter, slot] of granted) waiter.resolve(slot);
  }

  /** The line whose front waiter came first among those whose key has room (one line without a cap); lines left empty are dropped. */
  #lineToServe(): WaitingLine | undefined {
    if (!Number.isFinite(this.perKeyConcurrency)) {
      const line = this.#lines.get('');
      return line?.first() ? line : undefined;
    }
    let serve: WaitingLine | undefined;
    let oldest = Number.POSITIVE_INFINITY;
    for (const line of this.#lines.values()) {
      const first = line.first();
      if (!first) this.#lines.delete(line.key);
      else if (first.seq < oldest && this.#hasRoom(first.key)) {
        serve = line;
        oldest = first.seq;
      }
    }
    return serve;
  }
}

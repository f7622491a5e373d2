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
  resolve: (slot: Slot) => void;
  reject: (error: ExecutionError) => void;
  done: boolean;
  cleanup?: () => void;
}

/**
 * Admission control for a backend: a concurrency limit, an optional per-plugin cap and a bounded
 * FIFO queue. Aborted waiters leave the queue at once and never run.
 */
export class Scheduler {
  readonly concurrency: number;
  readonly maxQueue: number;
  readonly perKeyConcurrency: number;
  #active = 0;
  #queued = 0;
  #queue: Waiter[] = [];
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

  /** QUEUE_FULL for one more of `waiting` executions not yet admitted (`why` they wait) when those already fill every slot and the queue. */
  refuseBeyond(waiting: number, why: string): void {
    if (waiting < this.concurrency + this.maxQueue) return;
    throw new QueueFullError(`Queue is full (${waiting} ${why}: ${this.concurrency} can run and ${this.maxQueue} wait)`, {
      details: { maxQueue: this.maxQueue, active: this.#active, concurrency: this.concurrency },
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
    const waiter: Waiter = { key, resolve: granted, reject: refused, done: false };
    if (signal) {
      const abort = () => {
        if (waiter.done) return;
        waiter.done = true;
        this.#queued--;
        // Out of the queue now, not at the next release (a slot may stay held for a handler's whole
        // time limit while callers give up by the thousand): swept once those gone outnumber those left.
        if (this.#queue.length > 2 * this.#queued + 16) this.#queue = this.#queue.filter((each) => !each.done);
        refused(new AbortedError('Execution aborted while queued; it never ran', { details: { phase: 'queued' } }));
      };
      waiter.cleanup = onAbort(signal, abort);
    }
    this.#queue.push(waiter);
    this.#queued++;
  }

  /** Reject everything still waiting, and from now on refuse with `error` whoever would have to wait (shutdown); free slots are still given. */
  closeQueue(error: ExecutionError): void {
    this.#closedWith = error;
    for (const waiter of this.#queue) {
      if (waiter.done) continue;
      waiter.done = true;
      waiter.cleanup?.();
      waiter.reject(error);
    }
    this.#queue = [];
    this.#queued = 0;
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
      if (this.#queue.length) this.#queue = [];
      return;
    }
    // Told once the queue is settled: a waiter's own code (a dispatch that fails and gives its slot back) may pump again.
    const granted: Array<[Waiter, Slot]> = [];
    let i = 0;
    while (i < this.#queue.length && this.#active < this.concurrency) {
      const waiter = this.#queue[i]!;
      if (waiter.done) {
        this.#queue.splice(i, 1);
        continue;
      }
      if (!this.#hasRoom(waiter.key)) {
        i++;
        continue;
      }
      this.#queue.splice(i, 1);
      waiter.done = true;
      waiter.cleanup?.();
      this.#queued--;
      granted.push([waiter, this.#grant(waiter.key)]);
    }
    for (const [waiter, slot] of granted) waiter.resolve(slot);
  }
}

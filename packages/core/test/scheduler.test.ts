import { AbortedError, QueueFullError, ShuttingDownError } from '../src/index.js';
import { LatencyRecorder } from '../src/host/latency-recorder.js';
import { Scheduler, type Slot } from '../src/host/scheduler.js';
import v8 from 'node:v8';
import vm from 'node:vm';
import { describe, expect, it } from 'vitest';

/** Acquire and require an immediate slot. */
function now(scheduler: Scheduler, key = 'k', signal?: AbortSignal): Slot {
  const slot = scheduler.acquire(key, signal);
  expect(slot).not.toBeInstanceOf(Promise);
  return slot as Slot;
}

/** Acquire and require a queued one; `order` records when it is granted. */
function later(scheduler: Scheduler, key: string, order: string[], label: string, signal?: AbortSignal): Promise<Slot> {
  const pending = scheduler.acquire(key, signal);
  expect(pending).toBeInstanceOf(Promise);
  return (pending as Promise<Slot>).then((slot) => {
    order.push(label);
    return slot;
  });
}

const flush = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('Scheduler', () => {
  it('grants up to `concurrency` slots at once, synchronously, and queues the rest', async () => {
    const s = new Scheduler({ concurrency: 2, maxQueue: 10 });
    const a = now(s);
    const b = now(s);
    expect([s.active, s.queued]).toEqual([2, 0]);
    const order: string[] = [];
    const c = later(s, 'k', order, 'c');
    expect([s.active, s.queued]).toEqual([2, 1]);
    await flush();
    expect(order).toEqual([]);
    a.release();
    const slot = await c;
    expect(order).toEqual(['c']);
    expect([s.active, s.queued]).toEqual([2, 0]);
    b.release();
    slot.release();
    expect([s.active, s.queued]).toEqual([0, 0]);
  });

  it('serves the queue first in, first out', async () => {
    const s = new Scheduler({ concurrency: 1, maxQueue: 10 });
    const first = now(s);
    const order: string[] = [];
    const waiting = ['a', 'b', 'c', 'd'].map((label) => later(s, 'k', order, label));
    first.release();
    for (const pending of waiting) {
      const slot = await pending;
      await flush();
      slot.release();
    }
    expect(order).toEqual(['a', 'b', 'c', 'd']);
    expect([s.active, s.queued]).toEqual([0, 0]);
  });

  it('release() is idempotent', () => {
    const s = new Scheduler({ concurrency: 2, maxQueue: 0 });
    const a = now(s);
    now(s);
    a.release();
    a.release();
    a.release();
    expect(s.active).toBe(1);
  });

  it('QUEUE_FULL at once when the queue bound is reached, and nothing is queued', () => {
    const s = new Scheduler({ concurrency: 1, maxQueue: 2 });
    now(s);
    const order: string[] = [];
    const waiting = [later(s, 'k', order, 'a'), later(s, 'k', order, 'b')];
    let error: unknown;
    try {
      s.acquire('k');
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(QueueFullError);
    expect((error as QueueFullError).code).toBe('QUEUE_FULL');
    expect((error as QueueFullError).details).toMatchObject({ maxQueue: 2, active: 1, concurrency: 1 });
    expect(s.queued).toBe(2);
    s.closeQueue(new ShuttingDownError(undefined, { details: { phase: 'queued' } }));
    return Promise.allSettled(waiting);
  });

  it('maxQueue 0 means no waiting at all', () => {
    const s = new Scheduler({ concurrency: 1, maxQueue: 0 });
    now(s);
    expect(() => s.acquire('k')).toThrow(QueueFullError);
    expect(s.queued).toBe(0);
  });

  it('an abort while queued removes the waiter at once; it never gets a slot', async () => {
    const s = new Scheduler({ concurrency: 1, maxQueue: 1 });
    const running = now(s);
    const controller = new AbortController();
    const order: string[] = [];
    const aborted = later(s, 'k', order, 'aborted', controller.signal);
    controller.abort();
    const error = await aborted.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AbortedError);
    expect((error as AbortedError).details).toMatchObject({ phase: 'queued' });
    expect(s.queued).toBe(0);
    // Its place in the bounded queue is free again.
    const next = later(s, 'k', order, 'next');
    running.release();
    (await next).release();
    expect(order).toEqual(['next']);
    expect([s.active, s.queued]).toEqual([0, 0]);
  });

  it('a signal aborted before acquire() gives ABORTED rather than a queue place', async () => {
    const s = new Scheduler({ concurrency: 1, maxQueue: 5 });
    const running = now(s);
    const outcome = await Promise.resolve()
      .then(() => s.acquire('k', AbortSignal.abort()))
      .then(
        () => 'granted',
        (e: unknown) => e,
      );
    expect(outcome).toBeInstanceOf(AbortedError);
    expect(s.queued).toBe(0);
    running.release();
    expect(s.active).toBe(0);
  });

  it('a per-key cap holds one key back without holding other keys back', async () => {
    const s = new Scheduler({ concurrency: 4, maxQueue: 1, perKeyConcurrency: 1 });
    const a1 = now(s, 'a');
    const order: string[] = [];
    const a2 = later(s, 'a', order, 'a2');
    expect(s.queued).toBe(1);
    // Room for "b": it runs now, even though "a" waits ahead of it and the queue is full.
    const b1 = now(s, 'b');
    const c1 = now(s, 'c');
    expect([s.active, s.queued]).toEqual([3, 1]);
    b1.release();
    c1.release();
    await flush();
    expect(order).toEqual([]);
    a1.release();
    (await a2).release();
    expect(order).toEqual(['a2']);
    expect([s.active, s.queued]).toEqual([0, 0]);
  });

  it('QUEUE_FULL of a key held back by its own cap says so, with the cap in details', () => {
    const s = new Scheduler({ concurrency: 4, maxQueue: 1, perKeyConcurrency: 1 });
    now(s, 'a');
    const waiting = s.acquire('a') as Promise<Slot>;
    waiting.catch(() => undefined);
    let thrown: unknown;
    try {
      s.acquire('a');
    } catch (error) {
      thrown = error;
    }
    expect((thrown as Error).message).toBe('Queue is full (1 waiting, 1 running; plugin "a" has its perPluginConcurrency, 1, running)');
    expect((thrown as { details: unknown }).details).toEqual({ maxQueue: 1, active: 1, concurrency: 4, perPluginConcurrency: 1 });
    s.closeQueue(new QueueFullError('closed', { details: { maxQueue: 1, active: 1, concurrency: 4 } }));
  });

  it('a per-key cap skips a capped key in the queue and serves the next key', async () => {
    const s = new Scheduler({ concurrency: 2, maxQueue: 10, perKeyConcurrency: 1 });
    const a1 = now(s, 'a');
    const b1 = now(s, 'b');
    const order: string[] = [];
    const a2 = later(s, 'a', order, 'a2');
    const c1 = later(s, 'c', order, 'c1');
    b1.release();
    const slot = await c1;
    expect(order).toEqual(['c1']);
    a1.release();
    (await a2).release();
    slot.release();
    expect(order).toEqual(['c1', 'a2']);
  });

  it('keeps FIFO among waiters for the global limit', async () => {
    const s = new Scheduler({ concurrency: 1, maxQueue: 10, perKeyConcurrency: 1 });
    const first = now(s, 'x');
    const order: string[] = [];
    const waiting = [later(s, 'a', order, 'a'), later(s, 'b', order, 'b')];
    // "c" has per-key room but no global room: it must queue behind a and b.
    const c = later(s, 'c', order, 'c');
    first.release();
    for (const pending of [...waiting, c]) (await pending).release();
    expect(order).toEqual(['a', 'b', 'c']);
  });

  it('closeQueue fails every waiter, refuses whoever would wait after it, and leaves running slots alone', async () => {
    const s = new Scheduler({ concurrency: 1, maxQueue: 5 });
    const running = now(s);
    const order: string[] = [];
    const controller = new AbortController();
    const waiting = [later(s, 'k', order, 'a'), later(s, 'k', order, 'b', controller.signal)];
    const reason = new ShuttingDownError('closing', { details: { phase: 'queued' } });
    s.closeQueue(reason);
    const results = await Promise.allSettled(waiting);
    expect(results.map((r) => (r.status === 'rejected' ? r.reason : r.value))).toEqual([reason, reason]);
    expect([s.active, s.queued]).toEqual([1, 0]);
    // An abort after rejection changes nothing.
    controller.abort();
    expect(s.queued).toBe(0);
    running.release();
    await flush();
    expect(order).toEqual([]);
    expect(s.active).toBe(0);
    // Closed: a free slot is still given, but nobody waits any more.
    const free = s.acquire('k');
    expect(free).not.toBeInstanceOf(Promise);
    expect(() => s.acquire('k')).toThrow(reason);
    (free as { release(): void }).release();
  });

  it('enqueue() tells its waiter inside the release that frees a slot, first in first out, and refused waiters are told the reason', () => {
    const s = new Scheduler({ concurrency: 1, maxQueue: 5 });
    const first = now(s);
    expect(s.take('k')).toBeUndefined();
    const told: string[] = [];
    let second: Slot | undefined;
    s.enqueue('k', undefined, (slot) => ((second = slot), told.push('second')), () => told.push('second refused'));
    const controller = new AbortController();
    s.enqueue('k', controller.signal, () => told.push('third'), (error) => told.push(`third ${error.code}`));
    s.enqueue('k', undefined, (slot) => (told.push('fourth'), slot.release()), () => told.push('fourth refused'));
    expect([s.active, s.queued]).toEqual([1, 3]);
    first.release();
    // Synchronously, within release(): no turn of the loop in between.
    expect(told).toEqual(['second']);
    controller.abort();
    expect(told).toEqual(['second', 'third ABORTED']);
    second!.release();
    expect(told).toEqual(['second', 'third ABORTED', 'fourth']);
    expect([s.active, s.queued]).toEqual([0, 0]);
  });

  it('a waiter whose slot is given back inside its own grant passes it on after the queue is settled: nobody is skipped', () => {
    const s = new Scheduler({ concurrency: 2, maxQueue: 5 });
    const running = [now(s), now(s)];
    const told: string[] = [];
    // The first waiter's dispatch fails at once and gives its slot back while the release that granted it still runs.
    s.enqueue('k', undefined, (slot) => (told.push('a'), slot.release()), () => undefined);
    for (const label of ['b', 'c']) s.enqueue('k', undefined, () => told.push(label), () => undefined);
    for (const slot of running) slot.release();
    expect(told).toEqual(['a', 'b', 'c']);
    expect([s.active, s.queued]).toEqual([2, 0]);
  });
});

describe('LatencyRecorder', () => {
  it('reports zeros when empty', () => {
    expect(new LatencyRecorder().summary()).toEqual({ count: 0, p50: 0, p95: 0, p99: 0, max: 0 });
  });

  it('gives nearest-rank percentiles whatever the order of samples', () => {
    const recorder = new LatencyRecorder();
    const values = Array.from({ length: 100 }, (_, i) => i + 1);
    for (let i = values.length - 1; i > 0; i--) {
      const j = (i * 7919) % (i + 1);
      [values[i], values[j]] = [values[j]!, values[i]!];
    }
    for (const v of values) recorder.record(v);
    expect(recorder.summary()).toEqual({ count: 100, p50: 50, p95: 95, p99: 99, max: 100 });
  });

  it('sorts numerically, not as strings', () => {
    const recorder = new LatencyRecorder();
    for (const v of [9, 10, 100, 2]) recorder.record(v);
    expect(recorder.summary()).toMatchObject({ p50: 9, max: 100 });
  });

  it('keeps only the last `capacity` samples', () => {
    const recorder = new LatencyRecorder(10);
    for (let v = 1; v <= 25; v++) recorder.record(v * 1000);
    expect(recorder.summary()).toEqual({ count: 10, p50: 20_000, p95: 25_000, p99: 25_000, max: 25_000 });
  });

  it('rounds to microseconds', () => {
    const recorder = new LatencyRecorder();
    recorder.record(1.23456789);
    expect(recorder.summary()).toMatchObject({ p50: 1.235, max: 1.235 });
  });

  it('a single sample is every percentile', () => {
    const recorder = new LatencyRecorder();
    recorder.record(7);
    expect(recorder.summary()).toEqual({ count: 1, p50: 7, p95: 7, p99: 7, max: 7 });
  });
});

describe('waiters aborted while a slot stays held', () => {
  it('are let go at once, not kept until the next release: their signals can be collected', async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const scheduler = new Scheduler({ concurrency: 1, maxQueue: 10 });
    const held = now(scheduler);
    const signals: Array<WeakRef<AbortSignal>> = [];
    for (let i = 0; i < 2000; i++) {
      const controller = new AbortController();
      signals.push(new WeakRef(controller.signal));
      const waiting = scheduler.acquire('k', controller.signal) as Promise<Slot>;
      controller.abort();
      // (Not expect().rejects, which keeps what it was given.)
      const refused = await waiting.then(() => undefined, (error: unknown) => error);
      expect(refused).toBeInstanceOf(AbortedError);
    }
    expect(scheduler.queued).toBe(0);
    await new Promise((resolve) => setImmediate(resolve));
    gc();
    // Before, every one was held (2000) until the held slot was given back.
    expect(signals.filter((ref) => ref.deref() !== undefined).length).toBeLessThanOrEqual(20);
    // The queue still works: one waiting now gets the slot once it is given back.
    const order: string[] = [];
    const next = later(scheduler, 'k', order, 'next');
    held.release();
    (await next).release();
    expect(order).toEqual(['next']);
  });
});

describe('with a per-key cap, each key waits in a line of its own', () => {
  /** What the scheduler must do, the plain way: a free slot goes to the first waiter, in arrival order, whose key has room. */
  function grantsOfPlainQueue(ops: Array<['wait', string] | ['release', number] | ['abort', number]>, concurrency: number, cap: number): string[] {
    const running: string[] = [];
    const queue: Array<{ key: string; label: string }> = [];
    const granted: string[] = [];
    const room = (key: string) => running.length < concurrency && running.filter((each) => each.split('#')[0] === key).length < cap;
    const pump = () => {
      for (let i = 0; i < queue.length && running.length < concurrency; ) {
        if (!room(queue[i]!.key)) {
          i++;
          continue;
        }
        const [next] = queue.splice(i, 1);
        running.push(next!.label);
        granted.push(next!.label);
      }
    };
    ops.forEach((op, n) => {
      if (op[0] === 'wait') {
        const label = `${op[1]}#${n}`;
        if (!room(op[1])) queue.push({ key: op[1], label });
        else {
          running.push(label);
          granted.push(label);
        }
      } else if (op[0] === 'release' && running.length) {
        running.splice(op[1] % running.length, 1);
        pump();
      } else if (op[0] === 'abort' && queue.length) queue.splice(op[1] % queue.length, 1);
    });
    return granted;
  }

  it('grants as one queue walked in arrival order would, over random waits, releases and aborts', async () => {
    for (let round = 0; round < 20; round++) {
      let seed = round + 1;
      const random = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
      const ops = Array.from({ length: 400 }, (): ['wait', string] | ['release', number] | ['abort', number] => {
        const kind = random(10);
        return kind < 5 ? ['wait', 'abc'[random(3)]!] : kind < 9 ? ['release', random(1000)] : ['abort', random(1000)];
      });
      const s = new Scheduler({ concurrency: 3, maxQueue: 1000, perKeyConcurrency: 2 });
      const granted: string[] = [];
      const running: Array<{ label: string; slot: Slot }> = [];
      const waiting: Array<{ label: string; controller: AbortController }> = [];
      for (const [n, op] of ops.entries()) {
        if (op[0] === 'wait') {
          const label = `${op[1]}#${n}`;
          const controller = new AbortController();
          const given = s.acquire(op[1], controller.signal);
          const take = (slot: Slot) => {
            granted.push(label);
            running.push({ label, slot });
            const at = waiting.findIndex((each) => each.label === label);
            if (at >= 0) waiting.splice(at, 1);
          };
          if (given instanceof Promise) {
            waiting.push({ label, controller });
            given.then(take, () => undefined);
          } else take(given);
        } else if (op[0] === 'release' && running.length) running.splice(op[1] % running.length, 1)[0]!.slot.release();
        else if (op[0] === 'abort' && waiting.length) waiting.splice(op[1] % waiting.length, 1)[0]!.controller.abort();
        await flush();
      }
      expect(granted, `round ${round}`).toEqual(grantsOfPlainQueue(ops, 3, 2));
    }
  });

  it('closeQueue refuses the waiters of every line, in the order they came', async () => {
    const s = new Scheduler({ concurrency: 1, maxQueue: 10, perKeyConcurrency: 1 });
    now(s, 'x');
    const refused: string[] = [];
    for (const label of ['a1', 'b1', 'a2', 'c1', 'b2']) (s.acquire(label[0]!) as Promise<Slot>).catch(() => refused.push(label));
    s.closeQueue(new ShuttingDownError('closing'));
    await flush();
    expect(refused).toEqual(['a1', 'b1', 'a2', 'c1', 'b2']);
  });
});

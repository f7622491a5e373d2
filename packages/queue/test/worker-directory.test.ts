/**
 * A host's directory of the pool's workers, from their presences: a worker that dies without a
 * closing presence (kill -9, its machine gone) is let go of once silent past the lost-worker
 * window as other workers' presences come in, not only when health() or stats() reads it.
 */
import { describe, expect, it } from 'vitest';
import { WorkerDirectory } from '../src/host/worker-directory.js';
import type { PresenceBody } from '../src/shared/wire.js';

const presence = (id: string, pid: number): PresenceBody => ({ id, host: 'machine-a', pid, concurrency: 1, running: 0, heartbeatMs: 20, backend: 'in-process' });

describe("a host's directory of the pool's workers", () => {
  it('lets go of a worker gone silent when presences come in, without health() or stats() being asked', async () => {
    const directory = new WorkerDirectory(100);
    const killed = presence('worker-1', 101);
    directory.take(killed);
    expect(directory.seenAt(killed)).toBeTypeOf('number');
    // Silent past its window (workerLostMs 100, three of its 20 ms periods), and past the once-a-second sweep.
    await new Promise((resolve) => setTimeout(resolve, 1100));
    // Its successor, under a new id (a restarted process), says it is there.
    directory.take(presence('worker-2', 102));
    expect(directory.seenAt(killed)).toBeUndefined();
    expect(directory.seenAt(presence('worker-2', 102))).toBeTypeOf('number');
  });

  it('keeps a worker heard within its window however often others come and go', () => {
    const directory = new WorkerDirectory(60_000);
    const steady = presence('steady', 7);
    directory.take(steady);
    for (let n = 0; n < 50; n++) directory.take(presence(`restarted-${n}`, 1000 + n));
    expect(directory.seenAt(steady)).toBeTypeOf('number');
    expect(directory.alive().map((p) => p.id)).toContain('steady');
  });
});

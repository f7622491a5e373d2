// A worker's heartbeats to the hosts it runs executions for (runner/caller-watch.ts), on a real
// nats-server: a host that is gone is let go, not asked again every beat for the life of the worker.
import type { Msg } from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';
import { CallerWatch } from '../src/runner/caller-watch.js';
import { Courier } from '../src/shared/courier.js';
import { encode, type Kind } from '../src/shared/wire.js';
import { wallClockMs } from '@kb-labs/plugin-execution-core/backend-kit';
import { newPool, serverConnections } from './helpers.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A courier that counts the heartbeats it sends, and to whom. */
class CountingCourier extends Courier {
  readonly asked: string[] = [];
  override request(subject: string, kind: Kind, executionId: string | undefined, body: Uint8Array, timeoutMs: number): Promise<Msg> {
    if (kind === 'heartbeat') this.asked.push(subject);
    return super.request(subject, kind, executionId, body, timeoutMs);
  }
}

describe('CallerWatch', () => {
  const link = serverConnections('nc');

  it("bounds when a caller's handlers may begin by when the heartbeats it answered were sent, not when their answers were read", async () => {
    const courier = new CountingCourier(link.nc);
    const watch = new CallerWatch(courier, 'w-2', 100);
    const caller = `kbexec.${newPool('slow')}.caller.h`;
    // A caller that answers every heartbeat 400 ms late (a slow link, or answers that waited in the socket of a stopped worker).
    const sub = link.nc.subscribe(caller, { callback: (_error, msg) => void sleep(400).then(() => msg.respond(encode({ unknown: [] }, 'reply'))) });
    try {
      const lostMs = 1200;
      // A start accepted long ago: the caller may have written it off already.
      watch.add(`${caller}.old`, lostMs, { id: 'e-old', orphan: () => undefined }, performance.now() - 5000);
      expect(watch.beginBy(`${caller}.old`)).toBeLessThan(wallClockMs());
      watch.add(caller, lostMs, { id: 'e-1', orphan: () => undefined }, performance.now());
      expect(watch.beginBy(caller) - wallClockMs()).toBeGreaterThan(lostMs - 100);
      await sleep(1500);
      const ahead = watch.beginBy(caller) - wallClockMs();
      // Counted from when the answered heartbeat went (some 400-500 ms ago), not from when its answer came (under 100 ms ago).
      expect(ahead).toBeLessThan(lostMs - 300);
      expect(ahead).toBeGreaterThan(0);
      expect(courier.asked.filter((subject) => subject === caller).length).toBeGreaterThan(5);
    } finally {
      sub.unsubscribe();
      watch.close();
    }
  });

  it('lets go of a caller that is gone once its executions are dropped: ten hosts that called once and exited are not asked about for ever', async () => {
    const courier = new CountingCourier(link.nc);
    const watch = new CallerWatch(courier, 'w-1', 50);
    try {
      const pool = newPool('gone');
      const orphaned: string[] = [];
      for (let n = 0; n < 10; n++) {
        // Its result went as one message: watched until the caller is heard to have it.
        watch.add(`kbexec.${pool}.caller.h${n}`, 3000, { id: `e${n}`, resultSentOn: 0, orphan: () => orphaned.push(`e${n}`), resendResult: () => true }, performance.now());
      }
      // No one subscribes to those subjects: each heartbeat gets "no responders".
      await sleep(500);
      const asked = courier.asked.length;
      await sleep(500);
      // Before, every beat asked each of the ten again (some 100 more in this half second).
      expect(courier.asked.length - asked).toBe(0);
      expect(new Set(courier.asked).size).toBe(10);
      expect(orphaned).toEqual([]);
    } finally {
      watch.close();
    }
  });

  it('stops on the worker what its caller no longer waits for: named in a heartbeat answer, a caller silent for its lost window, a caller gone (no responders); the rest runs on', async () => {
    const watch = new CallerWatch(new Courier(link.nc), 'w-3', 100);
    const pool = newPool('orphans');
    const [waiting, silent, gone] = ['waiting', 'silent', 'gone'].map((name) => `kbexec.${pool}.caller.${name}`) as [string, string, string];
    const answering = link.nc.subscribe(waiting, { callback: (_error, msg) => void msg.respond(encode({ unknown: ['e-dropped'] }, 'reply')) });
    const mute = link.nc.subscribe(silent, { callback: () => undefined });
    const stopped = new Map<string, string>();
    const execution = (id: string) => ({ id, orphan: (reason: Error) => void stopped.set(id, reason.message) });
    try {
      watch.add(waiting, 3000, execution('e-dropped'), performance.now());
      watch.add(waiting, 3000, execution('e-kept'), performance.now());
      watch.add(silent, 300, execution('e-silent'), performance.now());
      watch.add(gone, 3000, execution('e-gone'), performance.now());
      for (let waited = 0; stopped.size < 3 && waited < 10_000; waited += 50) await sleep(50);
      await sleep(300);
      expect(Object.fromEntries(stopped)).toEqual({
        'e-dropped': 'Execution e-dropped stopped on worker w-3: its caller no longer waits for it',
        'e-silent': expect.stringMatching(/^Execution e-silent stopped on worker w-3: its caller has not answered heartbeats for \d+ ms/),
        'e-gone': 'Execution e-gone stopped on worker w-3: its calling host is gone',
      });
    } finally {
      answering.unsubscribe();
      mute.unsubscribe();
      watch.close();
    }
  });
});

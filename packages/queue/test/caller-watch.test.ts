// A worker's heartbeats to the hosts it runs executions for (runner/caller-watch.ts), on a real
// nats-server: a host that is gone is let go, not asked again every beat for the life of the worker.
import { connect, type Msg, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CallerWatch } from '../src/runner/caller-watch.js';
import { Courier } from '../src/shared/courier.js';
import type { Kind } from '../src/shared/wire.js';
import { natsServer, newPool } from './helpers.js';

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
  let server: Awaited<ReturnType<typeof natsServer>>;
  let nc: NatsConnection;
  beforeAll(async () => {
    server = await natsServer();
    nc = await connect({ servers: server.url });
  });
  afterAll(async () => {
    await nc?.close();
    await server?.stop();
  });

  it('lets go of a caller that is gone once its executions are dropped: ten hosts that called once and exited are not asked about for ever', async () => {
    const courier = new CountingCourier(nc);
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
});

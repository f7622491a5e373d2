import { describe, expect, it } from 'vitest';
import { SendGate } from '../src/shared/send-gate.js';
import { newPool, serverConnections } from './helpers.js';

// A connection's results of one message each wait at its SendGate while what went before them is
// not known to be at the server. What a flush confirms stops counting: a worker that has sent more
// over its connection's life than the gate ever lets wait at once (8 MiB) still sends.
const link = serverConnections('nc');

describe('SendGate, on a real nats-server', () => {
  it("lets through more than it ever lets wait at once, over a connection's life: what each flush confirms no longer counts", async () => {
    const subject = `gate.${newPool('gate')}`;
    const gate = new SendGate(() => link.nc.flush(), () => 64 * 1024);
    const bytes = 240 * 1024;
    expect(gate.gates(bytes)).toBe(true);
    let admitted = 0;
    const sending = (async () => {
      // 40 results of 240 KB: 9.6 MB in all.
      for (let i = 0; i < 40; i++) {
        await gate.admit(bytes);
        link.nc.publish(subject, new Uint8Array(bytes));
        admitted++;
      }
    })();
    // Generous: does not hang (a gate that never forgot what went held the 35th for ever).
    const within = await Promise.race([sending.then(() => true), new Promise<false>((resolve) => setTimeout(() => resolve(false), 20_000))]);
    expect({ within, admitted }).toEqual({ within: true, admitted: 40 });
  });
});

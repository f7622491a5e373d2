/**
 * A frame trickled to the server in tiny pieces: each socket read ws holds until the frame is whole
 * costs the host some 650 bytes however small it is, so the pieces of one frame are bounded by
 * what a client's stack would cut it into, not by ws's own 262,144 (~170 MB per connection).
 */
import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';
import { describe, expect, it } from 'vitest';
import { useChannelHarness } from './channel-suite.js';
import { clientFrame, delay, eventually, rawClient } from './helpers.js';

const setup = useChannelHarness((options) => new InProcessBackend(options));

/** A server's close frame with code 1008 (policy violation), as a raw client receives it. */
const CLOSE_1008 = '\x88\x02\x03\xf0';

describe('a frame sent in pieces', () => {
  it('one trickled in one-byte TCP segments is closed with 1008 before it is whole; one cut at a client segment size is served', async () => {
    const h = await setup();
    const text = JSON.stringify({ id: 1, data: 'z'.repeat(990) });
    const frame = clientFrame(1, Buffer.from(text));
    const answered = (client: ReturnType<typeof rawClient>) => client.received().includes('"replyTo":1') || client.received().includes(CLOSE_1008);

    // In eight pieces, as a client's stack could send it to the 1 KiB channel: served.
    const cut = rawClient(h.url('/small'));
    await eventually(() => cut.received().includes('"type":"ready"'), 'the ready frame');
    for (let at = 0; at < frame.length; at += 130) {
      cut.socket.write(frame.subarray(at, at + 130));
      await delay(20);
    }
    await eventually(() => answered(cut), 'an answer to the frame sent in pieces');
    expect(cut.received()).toContain(`{"type":"reply","replyTo":1,"data":{"echo":"${'z'.repeat(990)}","id":1}}`);

    // A byte at a time, each its own socket read.
    const trickle = rawClient(h.url('/small'));
    await eventually(() => trickle.received().includes('"type":"ready"'), 'the ready frame');
    for (let at = 0; at < frame.length && trickle.socket.writable && !trickle.received().includes(CLOSE_1008); at++) {
      trickle.socket.write(frame.subarray(at, at + 1));
      await delay(2);
    }
    await eventually(() => answered(trickle), 'an answer to the trickled frame');
    // Before: the frame was taken whole (a reply), the host holding each of its ~1,000 pieces meanwhile.
    expect(trickle.received()).toContain(CLOSE_1008);
    expect(trickle.received()).not.toContain('"replyTo":1');
    await eventually(() => h.lab.events.length === 1, 'the disconnect handler ran');
    expect(h.lab.events).toMatchObject([{ event: 'disconnect', code: 1008, cause: 'protocol' }]);
    cut.socket.destroy();
    trickle.socket.destroy();
  });
});

import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { Msg } from '@nats-io/transport-node';
import { Courier, courierPartBytes } from '../src/shared/courier.js';
import { PartsAssembler, workerParts } from '../src/shared/parts-assembler.js';
import { readHeaders } from '../src/shared/wire.js';
import { newPool, serverConnections } from './helpers.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const text = (value: string) => new TextEncoder().encode(value);

/** Settles with `promise`, or rejects once `ms` passed: a bound for "does not hang", far above what it takes. */
function within<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer!: NodeJS.Timeout;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`still waiting after ${ms} ms`)), ms)));
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

// A worker's courier while its connection is down (hold()) and once it is back (resume()): the
// connection here stays up, so what the courier lets go while held would arrive, and be seen.
describe('Courier: held while its connection is down, on a real nats-server', () => {
  const link = serverConnections('sender', 'receiver');

  /** What arrives on a new subject, as `kind:body`, each request answered. */
  async function listen(name: string): Promise<{ subject: string; arrived: string[] }> {
    const subject = `hold.${newPool(name)}`;
    const arrived: string[] = [];
    link.receiver.subscribe(subject, {
      callback: (_error, msg: Msg) => {
        arrived.push(`${readHeaders(msg).kind}:${new TextDecoder().decode(msg.data)}`);
        if (msg.reply) msg.respond();
      },
    });
    await link.receiver.flush();
    return { subject, arrived };
  }

  it('sends nothing while held, however often the drop is told, and everything once resumed, in order', async () => {
    const { subject, arrived } = await listen('held');
    const courier = new Courier(link.sender);
    courier.hold();
    courier.post(subject, 'log', 'exec-1', text('first'));
    // A second drop told before the connection is back: the same outage, and what it holds is kept.
    courier.hold();
    courier.post(subject, 'event', 'exec-1', text('second'));
    const result = courier.post(subject, 'result', 'exec-1', text('third'));
    await link.sender.flush();
    await sleep(200);
    expect(arrived).toEqual([]);
    expect(courier.connection).toBe(1);
    courier.resume();
    await within(Promise.resolve(result), 5000);
    await link.sender.flush();
    await expect.poll(() => arrived, { timeout: 5000 }).toEqual(['log:first', 'event:second', 'result:third']);
  });

  it('fails a body whose part waits for its answer when the connection drops, at once, not at its timeout', async () => {
    const subject = `hold.${newPool('in-flight')}`;
    let arrived = 0;
    // A receiver that takes parts and answers none (its answers lost with the connection).
    link.receiver.subscribe(subject, { callback: () => void arrived++ });
    await link.receiver.flush();
    const courier = new Courier(link.sender);
    const body = randomBytes(courierPartBytes(link.sender) * 3);
    const sent = courier.request(subject, 'input', 'exec-2', body, 60_000).catch((error: unknown) => error);
    await expect.poll(() => arrived, { timeout: 5000 }).toBe(1);
    courier.hold();
    const error = await within(sent, 5000);
    expect(error).toMatchObject({ message: 'the connection to the NATS server dropped while this body was being sent' });
  });

  it('sends no further part of a body once the drop is told between two parts', async () => {
    const subject = `hold.${newPool('between')}`;
    const assembler = new PartsAssembler(64 * 1024 * 1024, workerParts(() => 0));
    let arrived = 0;
    link.receiver.subscribe(subject, {
      callback: (_error, msg: Msg) => {
        arrived++;
        if (assembler.take(msg, readHeaders(msg), 'exec-3')) msg.respond(text('done'));
      },
    });
    await link.receiver.flush();
    // Told as the first part's answer is taken: no other part waits for an answer then.
    const courier: Courier = new Courier(link.sender, undefined, { onPartTaken: () => courier.hold() });
    const body = randomBytes(courierPartBytes(link.sender) * 3);
    const error = await within(courier.request(subject, 'input', 'exec-3', body, 10_000).catch((e: unknown) => e), 5000);
    expect(error).toMatchObject({ message: 'the connection to the NATS server dropped while this body was being sent' });
    await link.sender.flush();
    await sleep(200);
    expect(arrived).toBe(1);
  });

  it("releases what waits for a receiver's acknowledgement when the connection drops: it goes once resumed, not after the acknowledgement's timeout", async () => {
    const subject = `hold.${newPool('paced')}`;
    const arrived: string[] = [];
    // A receiver that acknowledges nothing: the acknowledgement asked for would come after PACE_TIMEOUT_MS (10 s).
    link.receiver.subscribe(subject, { callback: (_error, msg: Msg) => void arrived.push(new TextDecoder().decode(msg.data)) });
    await link.receiver.flush();
    const courier = new Courier(link.sender);
    // PACE_MESSAGES (256) log lines: the last one asks to be acknowledged, and what follows waits for it.
    for (let n = 0; n < 256; n++) courier.post(subject, 'log', 'exec-4', text(`line ${n}`));
    courier.post(subject, 'log', 'exec-4', text('after'));
    await link.sender.flush();
    await expect.poll(() => arrived.length, { timeout: 5000 }).toBe(256);
    await sleep(100);
    expect(arrived).not.toContain('after');
    courier.hold();
    courier.resume();
    await expect.poll(() => arrived.at(-1), { timeout: 5000 }).toBe('after');
  });

  // 16 MiB (docs/backends/queue.md) of events of 200 KiB: 81 are held, the 82nd and 83rd are not.
  const EVENT_BYTES = 200 * 1024;
  const HELD_EVENTS = Math.floor((16 * 1024 * 1024) / EVENT_BYTES);

  it('holds 16 MiB of log lines and events while the connection is down: what is over it is dropped and said in one notice, and no execution is failed for it', async () => {
    const { subject, arrived } = await listen('held-bound');
    const outpaced: string[] = [];
    const courier = new Courier(link.sender, undefined, { onOutpaced: (_subject, executionId) => void outpaced.push(executionId) });
    courier.hold();
    for (let n = 0; n < HELD_EVENTS + 2; n++) courier.post(subject, 'event', 'exec-5', new Uint8Array(EVENT_BYTES));
    // A result is always held, however much output waits (this one would not fit beside it).
    void courier.post(subject, 'result', 'exec-5', new Uint8Array(EVENT_BYTES));
    expect(outpaced).toEqual([]);
    courier.resume();
    // Its body is a log line's fields, encoded: its message reads as text within it.
    const notice = /^log:.*0 log line\(s\) and 2 event\(s\) of this execution were not delivered: the worker's connection to the NATS server was down, and the worker holds at most 16 MiB/;
    // 16 MiB through the server: bounds on hanging, not speeds (10 s was too little on a loaded machine).
    await expect.poll(() => arrived.some((each) => notice.test(each)), { timeout: 40_000 }).toBe(true);
    await expect.poll(() => arrived.filter((each) => each.startsWith('result:')).length, { timeout: 10_000 }).toBe(1);
    expect(arrived.filter((each) => each.startsWith('event:'))).toHaveLength(HELD_EVENTS);
  }, 60_000);

  it('asks for an acknowledgement once every 256 log lines, and has its sender wait while 256 wait for it', async () => {
    const subject = `hold.${newPool('acks')}`;
    let arrived = 0;
    let asked = 0;
    let answer: () => void = () => undefined;
    link.receiver.subscribe(subject, {
      callback: (_error, msg: Msg) => {
        arrived++;
        if (!msg.reply) return;
        asked++;
        answer = () => msg.respond();
      },
    });
    await link.receiver.flush();
    const courier = new Courier(link.sender);
    for (let n = 0; n < 256 + 255; n++) courier.post(subject, 'log', 'exec-7', text(`line ${n}`));
    await expect.poll(() => asked, { timeout: 5000 }).toBe(1);
    expect(courier.outputWaits(subject)).toBeUndefined();
    courier.post(subject, 'log', 'exec-7', text('the 256th waiting'));
    const waits = courier.outputWaits(subject);
    expect(waits).toBeDefined();
    answer();
    await within(waits!, 5000);
    // All went, and the 512th line asked again, none before it since the first.
    await expect.poll(() => arrived, { timeout: 5000 }).toBe(512);
    await sleep(200);
    expect(asked).toBe(2);
    expect(arrived).toBe(512);
  });

  it("fails the execution of an event that finds 16 MiB waiting for the receiver's acknowledgement (onOutpaced)", async () => {
    const subject = `hold.${newPool('outpaced')}`;
    // A receiver that acknowledges nothing.
    link.receiver.subscribe(subject, { callback: () => undefined });
    await link.receiver.flush();
    const outpaced: string[] = [];
    const courier = new Courier(link.sender, undefined, { onOutpaced: (_subject, executionId) => void outpaced.push(executionId) });
    // The second event asks to be acknowledged (PACE_BYTES), and the rest wait for it: 16 MiB of them, then two more.
    for (let n = 0; n < HELD_EVENTS + 4; n++) courier.post(subject, 'event', 'exec-6', new Uint8Array(EVENT_BYTES));
    expect([...new Set(outpaced)]).toEqual(['exec-6']);
  });
});

import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { headers, type Msg } from '@nats-io/transport-node';
import { Courier, courierPartBytes } from '../src/shared/courier.js';
import { TransferRefusedError } from '../src/shared/transfer-refused.js';
import { HOST_PARTS, PartsAssembler, workerParts } from '../src/shared/parts-assembler.js';
import { PartsWindow } from '../src/shared/parts-window.js';
import { readHeaders } from '../src/shared/wire.js';
import { newPool, serverConnections } from './helpers.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// A large body crosses in parts, each answered by the receiver. Several may wait for their
// answers at once (PartsWindow), so that a link with a long round trip is not crossed at one part
// per round trip; never more than the window's bound, so that a receiver that stops answering
// holds the sender back.
describe('Courier: a large body in parts, on a real nats-server', () => {
  const link = serverConnections('sender', 'receiver');

  it('several parts wait for their answers at once, at most PartsWindow.MAX_PARTS, and the body arrives whole and in order', async () => {
    const subject = `parts.${newPool('window')}`;
    const assembler = new PartsAssembler(64 * 1024 * 1024, workerParts(() => 0));
    const held: Array<() => void> = [];
    let arrived = 0;
    let answeredAtOnce = 4;
    let whole: Uint8Array | undefined;
    link.receiver.subscribe(subject, {
      callback: (_error, msg) => {
        arrived++;
        // The first parts are answered at once (the sender learns the link is fast); the rest are held.
        const take = () => {
          const body = assembler.take(msg, readHeaders(msg), 'exec-1');
          if (body) {
            whole = body;
            msg.respond(new TextEncoder().encode('done'));
          }
        };
        if (answeredAtOnce-- > 0) take();
        else held.push(take);
      },
    });
    await link.receiver.flush();
    const partBytes = courierPartBytes(link.sender);
    const body = randomBytes(partBytes * 20 + 123);
    const reply = new Courier(link.sender).request(subject, 'input', 'exec-1', body, 10_000);
    // The four answered, then as many more as the window let go: more than one (waited for, not a
    // fixed time: on a loaded machine 500 ms saw only three arrive), never past the bound.
    await expect.poll(() => arrived - 4, { timeout: 10_000 }).toBeGreaterThan(1);
    await sleep(500);
    const waitingAtOnce = arrived - 4;
    expect(waitingAtOnce).toBeLessThanOrEqual(PartsWindow.MAX_PARTS);
    // Answering releases the rest, in order.
    const release = async () => {
      while (held.length > 0 || !whole) {
        held.shift()?.();
        await sleep(1);
      }
    };
    await release();
    expect(new TextDecoder().decode((await reply).data)).toBe('done');
    expect(Buffer.compare(Buffer.from(whole!), body)).toBe(0);
    expect(arrived).toBe(21);
  });

  it('a receiver whose limit the body passes refuses it at that part: the sender stops there with TransferRefusedError', async () => {
    const subject = `parts.${newPool('refused')}`;
    const partBytes = courierPartBytes(link.sender);
    const assembler = new PartsAssembler(partBytes * 2, workerParts(() => 0));
    let arrived = 0;
    link.receiver.subscribe(subject, {
      callback: (_error, msg: Msg) => {
        arrived++;
        assembler.take(msg, readHeaders(msg), 'exec-2');
      },
    });
    await link.receiver.flush();
    const body = randomBytes(partBytes * 40);
    const error = await new Courier(link.sender).request(subject, 'input', 'exec-2', body, 10_000).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TransferRefusedError);
    expect((error as TransferRefusedError).limit).toBe(partBytes * 2);
    expect((error as TransferRefusedError).bytes).toBe(body.length);
    await sleep(200);
    // Refused at the third part; what the window had sent beside it, and nothing after.
    expect(arrived).toBeGreaterThanOrEqual(3);
    expect(arrived).toBeLessThanOrEqual(3 + PartsWindow.MAX_PARTS);
  });

  it("replies side by side are held no more than the execution's calls in flight: a new one takes the place of the oldest (one a dropped link cut off), and none is held for an execution with no call", async () => {
    const subject = `parts.${newPool('replies')}`;
    let callsPending = 1;
    const assembler = new PartsAssembler(64 * 1024 * 1024, workerParts(() => callsPending));
    const whole: string[] = [];
    link.receiver.subscribe(subject, {
      callback: (_error, msg) => {
        const body = assembler.take(msg, readHeaders(msg), 'exec-3');
        if (body) whole.push(new TextDecoder().decode(body));
        else if (msg.reply) msg.respond();
      },
    });
    await link.receiver.flush();
    const part = (transfer: string, index: number, text: string) => {
      const h = headers();
      for (const [name, value] of Object.entries({ 'Kb-Kind': 'rpc-reply', 'Kb-Exec-Id': 'exec-3', 'Kb-Part': `${index}/2`, 'Kb-Transfer': transfer })) h.set(name, value);
      link.sender.publish(subject, new TextEncoder().encode(text), { headers: h });
    };
    // One cut off halfway (its call failed with the link), then the reply to the call made again.
    part('cut-off', 0, 'lost ');
    part('again', 0, 'an ');
    part('again', 1, 'answer');
    // The one cut off was let go for it: its last part, late, completes nothing.
    part('cut-off', 1, 'reply');
    // No call in flight: a reply is not held.
    await link.sender.flush();
    await sleep(200);
    callsPending = 0;
    part('unasked', 0, 'not ');
    part('unasked', 1, 'held');
    await link.sender.flush();
    await sleep(200);
    expect(whole).toEqual(['an answer']);
  });

  it('a lane holds one body: one begun anew takes the place of the one before, whose late parts complete nothing', async () => {
    const subject = `parts.${newPool('lane')}`;
    const assembler = new PartsAssembler(64 * 1024 * 1024, HOST_PARTS);
    const whole: string[] = [];
    link.receiver.subscribe(subject, {
      callback: (_error, msg) => {
        const body = assembler.take(msg, readHeaders(msg), 'exec-4');
        if (body) whole.push(new TextDecoder().decode(body));
      },
    });
    await link.receiver.flush();
    const part = (transfer: string, index: number, text: string) => {
      const h = headers();
      for (const [name, value] of Object.entries({ 'Kb-Kind': 'result', 'Kb-Exec-Id': 'exec-4', 'Kb-Part': `${index}/2`, 'Kb-Transfer': transfer })) h.set(name, value);
      link.sender.publish(subject, new TextEncoder().encode(text), { headers: h });
    };
    // A result cut off halfway, sent again whole: the first one's rest comes late.
    part('first', 0, 'lost ');
    part('again', 0, 'the ');
    part('first', 1, 'result');
    part('again', 1, 'result');
    await link.sender.flush();
    await sleep(200);
    expect(whole).toEqual(['the result']);
  });

  it('a part for no execution here is answered and dropped (its sender does not wait out its timeout), and a transfer goes to no execution but its own', async () => {
    const subject = `parts.${newPool('stray')}`;
    const assembler = new PartsAssembler(64 * 1024 * 1024, HOST_PARTS);
    const whole: string[] = [];
    link.receiver.subscribe(subject, {
      callback: (_error, msg) => {
        const wire = readHeaders(msg);
        const body = assembler.take(msg, wire, wire.executionId === 'gone' ? undefined : wire.executionId);
        if (body) whole.push(new TextDecoder().decode(body));
      },
    });
    await link.receiver.flush();
    const part = (transfer: string, execution: string, index: number, text: string) => {
      const h = headers();
      for (const [name, value] of Object.entries({ 'Kb-Kind': 'result', 'Kb-Exec-Id': execution, 'Kb-Part': `${index}/2`, 'Kb-Transfer': transfer })) h.set(name, value);
      return link.sender.request(subject, new TextEncoder().encode(text), { headers: h, timeout: 5000 });
    };
    await expect(part('stray', 'gone', 0, 'nobody ')).resolves.toBeDefined();
    // A transfer begun for one execution and ended under another's name is not the other's body.
    await part('mixed', 'exec-5', 0, 'not ');
    link.sender.publish(subject, new TextEncoder().encode('mine'), { headers: (() => {
      const h = headers();
      for (const [name, value] of Object.entries({ 'Kb-Kind': 'result', 'Kb-Exec-Id': 'exec-6', 'Kb-Part': '1/2', 'Kb-Transfer': 'mixed' })) h.set(name, value);
      return h;
    })() });
    await link.sender.flush();
    await sleep(200);
    expect(whole).toEqual([]);
  });

  it('sweep() forgets the transfers idle for longer than it is given, and only those', async () => {
    const subject = `parts.${newPool('sweep')}`;
    const assembler = new PartsAssembler(64 * 1024 * 1024, HOST_PARTS);
    const whole: string[] = [];
    link.receiver.subscribe(subject, {
      callback: (_error, msg) => {
        const wire = readHeaders(msg);
        const body = assembler.take(msg, wire, wire.executionId);
        if (body) whole.push(new TextDecoder().decode(body));
      },
    });
    await link.receiver.flush();
    const part = (execution: string, index: number, text: string) => {
      const h = headers();
      for (const [name, value] of Object.entries({ 'Kb-Kind': 'result', 'Kb-Exec-Id': execution, 'Kb-Part': `${index}/3`, 'Kb-Transfer': `t-${execution}` })) h.set(name, value);
      link.sender.publish(subject, new TextEncoder().encode(text), { headers: h });
    };
    part('idle', 0, 'swept ');
    part('busy', 0, 'kept ');
    part('idle', 1, 'right ');
    await link.sender.flush();
    await sleep(300);
    // Begun as long ago as the idle one, but a part came since.
    part('busy', 1, 'all ');
    await link.sender.flush();
    await link.receiver.flush();
    assembler.sweep(150);
    part('idle', 2, 'away');
    part('busy', 2, 'through');
    await link.sender.flush();
    await sleep(200);
    expect(whole).toEqual(['kept all through']);
  });
});

describe('a size over a limit, said', () => {
  it('in bytes when both would read the same rounded (20 MiB over 20 MiB), rounded otherwise', () => {
    const close = new TransferRefusedError(20 * 1024 * 1024, 20 * 1024 * 1024 + 74).toValidationError('handler result', "the calling host's limit", "this worker's is 20 MiB");
    expect(close.message).toBe("The handler result is 20971594 bytes encoded, over the calling host's limit of 20971520 bytes (its maxPayloadBytes; this worker's is 20 MiB)");
    expect(close.details).toMatchObject({ path: 'result', bytes: 20971594, limit: 20971520 });
    const far = new TransferRefusedError(1024 * 1024, 5 * 1024 * 1024).toValidationError('input', 'the limit of worker w-1 (box)', "this host's is 20 MiB");
    expect(far.message).toMatch(/^The input is 5 MiB encoded, over the limit of worker w-1 \(box\) of 1 MiB /);
  });
});

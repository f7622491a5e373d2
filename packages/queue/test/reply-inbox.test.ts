import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, headers } from '@nats-io/transport-node';
import { ReplyInbox } from '../src/shared/reply-inbox.js';
import { ensureStream, publishToStream } from '../src/shared/pool-stream.js';
import { PoolSubjects } from '../src/shared/subjects.js';
import { newPool, testServer } from './helpers.js';
import { startNatsServer } from '../../../scripts/nats-server.mjs';

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (data: Uint8Array) => new TextDecoder().decode(data);

// The requests of the host (its task publishes) and of the workers (claims, heartbeats, parts) go
// through one inbox per connection instead of nats.js's request(): what a caller sees of a reply,
// a missing listener, a silence or a closed connection must stay what nats.js gave.
const nats = testServer();
let inbox: ReplyInbox;
beforeAll(() => {
  inbox = new ReplyInbox(nats.nc);
});

describe('ReplyInbox, on a real nats-server', () => {

  it('gives each request its own answer, many at once and out of order', async () => {
    const subject = `echo.${newPool('inbox')}`;
    const sub = nats.nc.subscribe(subject, {
      callback: (_error, msg) => {
        const n = Number(text(msg.data));
        // Answer the even ones later than the odd ones.
        setTimeout(() => msg.respond(bytes(`re:${n}:${msg.headers?.get('x-n')}`)), n % 2 === 0 ? 20 : 0);
      },
    });
    await nats.nc.flush();
    const asked = Array.from({ length: 200 }, (_, n) => {
      const h = headers();
      h.set('x-n', String(n));
      return inbox.request(subject, bytes(String(n)), { headers: h, timeout: 5_000 }).then((msg) => text(msg.data));
    });
    expect(await Promise.all(asked)).toEqual(Array.from({ length: 200 }, (_, n) => `re:${n}:${n}`));
    sub.unsubscribe();
  });

  it('nobody listening: a RequestError whose isNoResponders() is true, at once', async () => {
    const started = performance.now();
    const error = await inbox.request(`nobody.${newPool('here')}`, bytes('x'), { timeout: 5_000 }).catch((e: unknown) => e);
    expect(performance.now() - started).toBeLessThan(4_000);
    expect((error as Error).name).toBe('RequestError');
    expect((error as { isNoResponders(): boolean }).isNoResponders()).toBe(true);
    expect((error as Error).message).toMatch(/no responders/);
  });

  it('a listener that never answers: a TimeoutError after the timeout, and a late answer is dropped', async () => {
    const subject = `slow.${newPool('inbox')}`;
    let late: (() => void) | undefined;
    const sub = nats.nc.subscribe(subject, { callback: (_error, msg) => {
        late = () => msg.respond(bytes('too late'));
      },
    });
    await nats.nc.flush();
    const asked = inbox.request(subject, bytes('x'), { timeout: 150 }).catch((e: unknown) => e);
    // The request reached the listener (on a loaded machine, maybe only past the 150 ms): its answer can be given late.
    await expect.poll(() => late, { timeout: 10_000 }).toBeDefined();
    const error = await asked;
    expect((error as Error).name).toBe('TimeoutError');
    late!();
    await nats.nc.flush();
    // The next request on the same inbox gets its own answer, not the late one.
    const next = nats.nc.subscribe(`${subject}.next`, { callback: (_e, msg) => {
        msg.respond(bytes('mine'));
      },
    });
    await nats.nc.flush();
    expect(text((await inbox.request(`${subject}.next`, bytes('y'), { timeout: 2_000 })).data)).toBe('mine');
    sub.unsubscribe();
    next.unsubscribe();
  });

  it('a body over the server\'s max_payload rejects at once and leaves nothing waiting', async () => {
    const big = new Uint8Array((nats.nc.info?.max_payload ?? 1024 * 1024) + 1);
    await expect(inbox.request(`any.${newPool('big')}`, big, { timeout: 5_000 })).rejects.toThrow();
  });

  it('a connection closed while requests wait fails them at once, and later ones too', async () => {
    const own = await connect({ servers: nats.url });
    const ownInbox = new ReplyInbox(own);
    const subject = `silent.${newPool('inbox')}`;
    const sub = nats.nc.subscribe(subject, { callback: () => undefined });
    await nats.nc.flush();
    const waiting = ownInbox.request(subject, bytes('x'), { timeout: 30_000 }).catch((e: unknown) => e);
    await own.flush();
    const started = performance.now();
    await own.close();
    const error = (await waiting) as Error;
    expect(performance.now() - started).toBeLessThan(2_000);
    expect(error.name).toBe('ClosedConnectionError');
    await expect(ownInbox.request(subject, bytes('x'), { timeout: 1_000 })).rejects.toThrow(/closed/);
    sub.unsubscribe();
  });
});

describe('publishToStream, on a real nats-server', () => {

  it('stores a task, names its sequence, and says when the same msg id came again', async () => {
    const subjects = new PoolSubjects('kbexec', newPool('publish'));
    await ensureStream(nats.jsm, subjects, { maxMessages: 2, maxMessageBytes: 1024 * 1024, storage: 'memory' }, 'host');
    const first = await publishToStream(inbox, subjects.tasks, bytes('a'), { msgId: 'id-1', headers: headers(), timeout: 2_000 });
    const second = await publishToStream(inbox, subjects.tasks, bytes('b'), { msgId: 'id-2', headers: headers(), timeout: 2_000 });
    expect(second.seq).toBe(first.seq + 1);
    expect([first.duplicate, second.duplicate]).toEqual([false, false]);
    const again = await publishToStream(inbox, subjects.tasks, bytes('a'), { msgId: 'id-1', headers: headers(), timeout: 2_000 });
    expect(again).toEqual({ seq: first.seq, duplicate: true });
    const stored = await nats.jsm.streams.getMessage(subjects.stream, { seq: first.seq });
    expect(stored?.header?.get('Nats-Msg-Id')).toBe('id-1');
    // The stream's bound (2 tasks, discard new): the server's own words, which the host turns into QUEUE_FULL.
    await expect(publishToStream(inbox, subjects.tasks, bytes('c'), { msgId: 'id-3', headers: headers(), timeout: 2_000 })).rejects.toThrow(/maximum messages/);
    await nats.jsm.streams.delete(subjects.stream);
    // No stream takes the subject any more.
    await expect(publishToStream(inbox, subjects.tasks, bytes('d'), { msgId: 'id-4', headers: headers(), timeout: 2_000 })).rejects.toThrow(/no stream takes subject .* \(no responders\)/);
  });
});

describe('ReplyInbox, as a user the server refuses some subjects', () => {
  const users = `{ users = [
    { user: narrow, password: narrow-secret, permissions: { publish: ["ok.>"], subscribe: ["_INBOX.>", "ok.>"], allow_responses: true } },
    { user: deaf, password: deaf-secret, permissions: { publish: ["ok.>"], subscribe: ["ok.>"], allow_responses: true } },
  ] }`;
  let guarded: Awaited<ReturnType<typeof startNatsServer>>;
  beforeAll(async () => {
    guarded = await startNatsServer({ authorization: users });
  });
  afterAll(async () => {
    await guarded?.stop();
  });

  it('a publish refused fails the requests to that subject at once, and only those: one to a permitted subject still gets its answer', async () => {
    const own = await connect({ servers: guarded.url, user: 'narrow', pass: 'narrow-secret' });
    const ownInbox = new ReplyInbox(own);
    const sub = own.subscribe('ok.slow', { callback: (_error, msg) => void setTimeout(() => msg.respond(bytes('answered')), 300) });
    await own.flush();
    const permitted = ownInbox.request('ok.slow', bytes('x'), { timeout: 10_000 }).then((msg) => text(msg.data));
    const refused = await ownInbox.request('denied.here', bytes('x'), { timeout: 10_000 }).catch((e: unknown) => e);
    expect((refused as Error).name).toBe('RequestError');
    expect((refused as Error).message).toMatch(/permissions violation/i);
    await expect(permitted).resolves.toBe('answered');
    sub.unsubscribe();
    await own.close();
  });

  it('an inbox the server will not let it subscribe to fails its requests at once, and the later ones too, not at their timeouts', async () => {
    const own = await connect({ servers: guarded.url, user: 'deaf', pass: 'deaf-secret' });
    const ownInbox = new ReplyInbox(own);
    const sub = own.subscribe('ok.echo', { callback: (_error, msg) => void msg.respond(bytes('echo')) });
    await own.flush();
    const first = await ownInbox.request('ok.echo', bytes('x'), { timeout: 20_000 }).catch((e: unknown) => e);
    expect((first as Error).message).toMatch(/permissions violation/i);
    const started = performance.now();
    const later = await ownInbox.request('ok.echo', bytes('y'), { timeout: 20_000 }).catch((e: unknown) => e);
    expect((later as Error).message).toMatch(/permissions violation/i);
    // Generous: refused at once rather than at its 20 s timeout.
    expect(performance.now() - started).toBeLessThan(10_000);
    sub.unsubscribe();
    await own.close();
  });
});

/**
 * Hardening of the WebSocket edge: authentication, payload limits, heartbeat, backpressure, bad frames,
 * routing and teardown. None of it depends on where handlers run, so it runs once, on in-process.
 */
import type { IncomingMessage } from 'node:http';
import v8 from 'node:v8';
import vm from 'node:vm';
import { TIMEOUT_OPTION_REFUSALS } from '@kb-labs/plugin-execution-conformance';
import { ValidationError } from '@kb-labs/plugin-execution-core';
import { mountWebSocketChannels, type ChannelMount } from '@kb-labs/plugin-execution-channels';
import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { WebSocket } from 'ws';
import { useChannelHarness } from './channel-suite.js';
import { TestClient, clientFrame, delay, eventually, halfOpenRawClient, labManifest, labPlatform, labPlugin, rawClient, rawRequestStatus, rawResponseHead, rawTargetStatus, startServer, upgradeStatus } from './helpers.js';

const setup = useChannelHarness((options) => new InProcessBackend(options));

describe('authentication on upgrade', () => {
  const authenticate = (request: IncomingMessage) => {
    switch (request.headers.authorization) {
      case 'Bearer good':
        return { allow: true as const, identity: { user: 'ann', roles: ['admin'], since: new Date(0) } };
      case 'Bearer banned':
        return { allow: false as const, status: 403 as const, message: 'banned' };
      case 'Bearer anonymous':
        return true;
      case 'Bearer nobody':
        // A lookup that found no one: an identity of null is no identity.
        return { allow: true as const, identity: null };
      case 'Bearer none':
        // The same written `lookup(token) ?? false`.
        return { allow: true as const, identity: false };
      case 'Bearer boom':
        throw new Error('auth store down');
      case 'Bearer hang':
        return new Promise<never>(() => {});
      default:
        return undefined;
    }
  };

  it('refuses with 401/403 before the handshake and puts the identity in the context', async () => {
    const errors: Array<{ phase: string; message: string }> = [];
    const h = await setup({ authenticate, authenticateTimeoutMs: 300, onError: (e, info) => errors.push({ phase: info.phase, message: (e as Error).message }) });
    const auth = (token: string) => ({ authorization: `Bearer ${token}` });

    expect(await upgradeStatus(h.url('/echo'))).toEqual({ status: 401, body: 'Unauthorized' });
    expect(await upgradeStatus(h.url('/echo'), auth('banned'))).toEqual({ status: 403, body: 'banned' });
    expect((await upgradeStatus(h.url('/echo'), auth('boom'))).status).toBe(500);
    expect((await upgradeStatus(h.url('/echo'), auth('hang'))).status).toBe(503);
    expect(errors).toEqual([
      { phase: 'authenticate', message: 'auth store down' },
      { phase: 'authenticate', message: 'authenticate() did not answer within 300 ms' },
    ]);
    // No refused upgrade reached the handler.
    expect(h.mount.stats()).toMatchObject({ executions: 0, upgradesAccepted: 0, upgradesRejected: { 401: 1, 403: 1, 500: 1, 503: 1 } });

    const client = await h.connect('/echo', { headers: auth('good') });
    const reply = await client.request(1, 'context');
    // The identity went through JSON: plain data on every backend.
    expect((reply.data as { context: { host: unknown } }).context.host).toMatchObject({
      kind: 'ws',
      identity: { user: 'ann', roles: ['admin'], since: '1970-01-01T00:00:00.000Z' },
    });
    expect(h.mount.registry.get(client.connectionId)?.info.identity).toEqual({ user: 'ann', roles: ['admin'], since: '1970-01-01T00:00:00.000Z' });
  });

  it.each([
    ['rejects', async () => Promise.reject(new Error('error sink down'))],
    ["rejects with another realm's promise (a vm context)", () => vm.runInNewContext('Promise.reject(new Error("error sink down"))')],
    ['throws', () => {
      throw new Error('error sink down');
    }],
  ])('an onError that %s is not left unhandled, and does not silence failures: a warning says it failed, once, and each failure is warned of as without onError', async (_how, failing) => {
    const unhandled: unknown[] = [];
    const warnings: Array<{ code?: string; message: string }> = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    const onWarning = (warning: Error & { code?: string }) => warnings.push({ code: warning.code, message: warning.message });
    process.on('unhandledRejection', onUnhandled);
    process.on('warning', onWarning);
    try {
      let reported = 0;
      const h = await setup({
        authenticate,
        onError: (() => {
          reported++;
          return failing();
        }) as () => void,
      });
      expect((await upgradeStatus(h.url('/echo'), { authorization: 'Bearer boom' })).status).toBe(500);
      expect((await upgradeStatus(h.url('/echo'), { authorization: 'Bearer boom' })).status).toBe(500);
      await eventually(() => warnings.length >= 2, 'the warnings');
      await delay(20);
      expect(warnings.map((w) => w.code)).toEqual(['KB_PLUGIN_CALLBACK_FAILED', 'KB_PLUGIN_CHANNEL_ERROR']);
      expect(reported).toBe(2);
      expect(unhandled).toEqual([]);
      expect(warnings[0]!.message).toContain('The onError hook given to mountWebSocketChannels() threw or rejected (Error: error sink down)');
      expect(warnings[1]!.message).toContain('authenticate: Error: auth store down (said once per phase and error code; the onError hook given failed)');
      const client = await h.connect('/echo', { headers: { authorization: 'Bearer good' } });
      expect(client.connectionId).toBeTruthy();
    } finally {
      process.off('unhandledRejection', onUnhandled);
      process.off('warning', onWarning);
    }
  });

  it.each([
    ['a misspelt key', { allowed: true, identity: { id: 'u1' } }, 'an object with the unknown key "allowed"'],
    ['a misspelt identity', { allow: true, identiy: { id: 'u1' } }, 'an object with the unknown key "identiy"'],
    ['allow as a string', { allow: 'true' }, 'an object whose allow is not a boolean (string)'],
    ['a number', 1, 'a number (1)'],
    ['a success status', { allow: false, status: 200 }, 'status 200, which is no HTTP error status (400-599)'],
    ['an identity on a refusal', { allow: false, identity: { id: 'u1' } }, 'allow: false with an identity'],
    ['a NaN status', { allow: false, status: Number.NaN }, 'status NaN, which is no HTTP error status'],
  ])('a verdict of another shape (%s) is refused with 500 and named to onError, not taken for a silent 401', async (_what, verdict, said) => {
    const errors: Array<{ phase: string; message: string }> = [];
    const h = await setup({ authenticate: (() => verdict) as never, onError: (error, info) => errors.push({ phase: info.phase, message: (error as Error).message }) });
    expect((await upgradeStatus(h.url('/echo'))).status).toBe(500);
    expect(errors).toEqual([{ phase: 'authenticate', message: expect.stringContaining(`authenticate() returned ${said}`) }]);
  });

  it("a host's fake timers (vi.useFakeTimers()) do not stop authenticateTimeoutMs: a hook that never answers is refused 503 on the real clock", async () => {
    const h = await setup({ authenticate, authenticateTimeoutMs: 300 });
    const realSetTimeout = globalThis.setTimeout;
    vi.useFakeTimers();
    try {
      const refused = upgradeStatus(h.url('/echo'), { authorization: 'Bearer hang' }).then(({ status }) => status);
      const stuck = new Promise<string>((resolve) => realSetTimeout(() => resolve('no answer after 10 s of real time'), 10_000).unref());
      // Before: the upgrade waited on the host's fake clock for ever.
      expect(await Promise.race([refused, stuck])).toBe(503);
    } finally {
      vi.useRealTimers();
    }
  });

  it('a verdict is read once: a status getter that says 401, then 101, refuses with 401 (never a bare "101 Switching Protocols")', async () => {
    let reads = 0;
    const verdict = Object.defineProperties({ allow: false }, { status: { enumerable: true, get: () => (reads++ === 0 ? 401 : 101) } });
    const h = await setup({ authenticate: (() => verdict) as never });
    expect((await upgradeStatus(h.url('/echo'))).status).toBe(401);
    expect(reads).toBe(1);
  });

  it('a refusal may answer any HTTP error status (429 for a client over its rate), with its message', async () => {
    const h = await setup({ authenticate: () => ({ allow: false as const, status: 429, message: 'slow down' }) });
    expect(await upgradeStatus(h.url('/echo'))).toEqual({ status: 429, body: 'slow down' });
  });

  it('lets a manifest require an identity: anonymous verdicts and a missing hook both get 401', async () => {
    const h = await setup({ authenticate });
    expect((await upgradeStatus(h.url('/private'), { authorization: 'Bearer anonymous' })).status).toBe(401);
    expect((await upgradeStatus(h.url('/private'), { authorization: 'Bearer nobody' })).status).toBe(401);
    expect((await upgradeStatus(h.url('/private'), { authorization: 'Bearer none' })).status).toBe(401);
    expect((await upgradeStatus(h.url('/echo'), { authorization: 'Bearer anonymous' })).status).toBe(101);
    expect((await upgradeStatus(h.url('/private'), { authorization: 'Bearer good' })).status).toBe(101);

    const open = await setup();
    expect((await upgradeStatus(open.url('/private'))).status).toBe(401);
    expect((await upgradeStatus(open.url('/echo'))).status).toBe(101);
  });
  it.each([
    ['a function', () => 1, /\(a function\)/],
    ['a symbol', Symbol('who'), /\(a symbol\)/],
    ['an object whose toJSON gives nothing', { toJSON: () => undefined }, /its toJSON\(\) gave nothing/],
    ['a BigInt', 1n, /Do not know how to serialize a BigInt/],
  ])('an identity JSON cannot carry (%s) is refused with 500, and onError names the identity', async (_what, identity, said) => {
    const errors: Array<{ phase: string; message: string }> = [];
    const h = await setup({ authenticate: () => ({ allow: true as const, identity }), onError: (error, info) => errors.push({ phase: info.phase, message: (error as Error).message }) });
    expect((await upgradeStatus(h.url('/echo'))).status).toBe(500);
    expect(errors).toEqual([{ phase: 'authenticate', message: expect.stringMatching(/^authenticate\(\) returned an identity JSON cannot carry/) }]);
    expect(errors[0]!.message).toMatch(said);
  });
});

describe('payload limits', () => {
  it('closes with 1009 past 1 MiB by default, and past the manifest maxPayload where one is set', async () => {
    const h = await setup();
    expect(Object.fromEntries(h.mount.channels.map((c) => [c.channel, c.maxPayload]))).toMatchObject({ '/echo': 1024 * 1024, '/small': 1024 });

    const big = await h.connect('/echo');
    const fits = 'x'.repeat(1024 * 1024 - 64);
    expect((await big.request(1, fits)).data).toEqual({ echo: fits, id: 1 });
    big.send({ id: 2, data: 'x'.repeat(1024 * 1024) });
    expect((await big.closed).code).toBe(1009);
    // Its disconnect handler hears that the server ended it, and why.
    await eventually(() => h.lab.events.some((e) => (e as { event?: string }).event === 'disconnect'), 'the disconnect handler ran');
    expect(h.lab.events).toMatchObject([{ event: 'disconnect', cause: 'protocol' }]);

    const small = await h.connect('/small');
    expect((await small.request(1, 'y'.repeat(900))).type).toBe('reply');
    small.send({ id: 2, data: 'y'.repeat(2000) });
    expect((await small.closed).code).toBe(1009);
  });

  it.each([
    ['a frame past maxPayload', 1009, clientFrame(1, Buffer.alloc(0), 2 * 1024 * 1024)],
    ['a text frame that is not UTF-8', 1007, clientFrame(1, Buffer.from([0xc3, 0x28]))],
    ['an unknown opcode', 1002, clientFrame(3, Buffer.alloc(0))],
  ])('a client that sends %s and never answers the close: its disconnect handler hears the code the server closed with (%i), not 1006', async (_what, code, frame) => {
    const h = await setup();
    const client = rawClient(h.url('/echo'), frame);
    await eventually(() => h.lab.events.some((e) => (e as { event?: string }).event === 'disconnect'), 'the disconnect handler ran');
    // Before: 1006 (no close frame came back), as if the client had vanished.
    expect(h.lab.events).toMatchObject([{ event: 'disconnect', code, cause: 'protocol' }]);
    client.socket.destroy();
  });
});

describe('a context function that returns a promise', () => {
  it('is refused as its mistake (reported, phase context, the connection closed 1011), not run without the fields it was to give, and its rejection is not left unhandled', async () => {
    const errors: Array<{ phase: string; message: string }> = [];
    const h = await setup({
      context: (async () => {
        throw new Error('tenant lookup failed');
      }) as never,
      onError: (error, info) => errors.push({ phase: info.phase, message: (error as Error).message }),
    });
    const client = await h.connect('/echo', { ready: false });
    expect(await client.closed).toEqual({ code: 1011, reason: 'context' });
    expect(errors).toEqual([{ phase: 'context', message: expect.stringContaining('The context option returned a promise') }]);
    await delay(50);
  });
});

describe('a connection whose context the host refuses', () => {
  it('is closed with 1011, and a bad frame it sends meanwhile (unmasked, in the same write as its upgrade) does not take the host down', async () => {
    const errors: string[] = [];
    const h = await setup({
      context: () => {
        throw new Error('no tenant header');
      },
      onError: (_error, info) => errors.push(info.phase),
    });
    // A text frame "hi" without the mask a client must set: ws reports it as an 'error' on the server's socket.
    const client = rawClient(h.url('/echo'), Buffer.from([0x81, 0x02, 0x68, 0x69]));
    await client.closed;
    expect(client.received()).toMatch(/^HTTP\/1\.1 101/);
    expect(errors).toEqual(['context']);
    // Still serving: the refused context is all that happened.
    expect(await upgradeStatus(h.url('/echo'))).toEqual({ status: 101, body: '' });
  });
  it('one whose client never answers the close counts against maxConnections (twice it, as closing connections do), loses its socket after closeTimeoutMs, and unmount ends it at once', async () => {
    const h = await setup({ maxConnections: 2, closeTimeoutMs: 1500, context: () => {
      throw new Error('no tenant header');
    }, onError: () => undefined });
    // Reads (the 101 and the close frame) and never answers.
    const silent = () => rawClient(h.url('/echo')).closed;
    const closed = [silent(), silent(), silent(), silent()];
    await eventually(async () => (await upgradeStatus(h.url('/echo'))).status === 503, 'four silent refused sockets fill twice maxConnections');
    // The refusal has its cause in stats(): connections on their way out (of `connections`, as documented; they were 0 there).
    expect(h.mount.stats()).toMatchObject({ connections: 4, closingConnections: 4 });
    // Their sockets go after closeTimeoutMs, and the mount takes connections again.
    await Promise.all(closed);
    expect((await upgradeStatus(h.url('/echo'))).status).toBe(101);
    const late = silent();
    await eventually(async () => (await upgradeStatus(h.url('/echo'))).status === 101, 'one silent socket leaves room');
    const started = Date.now();
    await h.mount.unmount();
    await late;
    expect(Date.now() - started).toBeLessThan(1000);
  });
});

describe('connections the server closes', () => {
  it("one refused by its connect handler (or kicked) whose client never answers the close counts as closing at once and loses its socket after closeTimeoutMs, not ws's 30 s: refused clients cannot lock out the others", async () => {
    const h = await setup({ maxConnections: 2, closeTimeoutMs: 500 });
    // Reads (the 101 and the close frame) and never answers.
    const silent = () => rawClient(h.url('/deny')).closed;
    const closed = [silent(), silent()];
    await eventually(() => h.mount.stats().denied === 2, 'both refused by the connect handler');
    // Closing, not open: a client that wants in still gets in.
    expect(h.mount.stats()).toMatchObject({ connections: 2, closingConnections: 2 });
    expect((await upgradeStatus(h.url('/echo'))).status).toBe(101);
    const started = Date.now();
    await Promise.all(closed);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('without closeTimeoutMs, one refused whose client never answers the close loses its socket after the default (1 s), not ws\'s 30 s', async () => {
    const h = await setup();
    const { closed } = rawClient(h.url('/deny'));
    await eventually(() => h.mount.stats().denied === 1, 'refused by the connect handler');
    // A generous bound: 1 s is the default, ten times it would not fit.
    await eventually(() => h.mount.stats().connections === 0, 'its socket destroyed', 5_000);
    await closed;
  });

  it("one the host closes through its ChannelConnection with a code or reason ws refuses is closed plainly (1000), not left open with the host's call throwing", async () => {
    const h = await setup();
    const client = await h.connect('/echo');
    const connection = h.mount.registry.get(client.connectionId)!;
    // registry.close() checks these; the connection's own close() is what the mount calls.
    expect(() => connection.close(999, 'bad code')).not.toThrow();
    expect(await client.closed).toEqual({ code: 1000, reason: '' });
    await eventually(() => h.lab.events.length === 1, 'the disconnect ran');
    expect(h.lab.events[0]).toMatchObject({ connectionId: client.connectionId, code: 1000, reason: '' });
  });
});

describe('the disconnect of a connection the server closed', () => {
  it("is told the server's code and reason, whatever the client answers, or if it never does", async () => {
    const h = await setup({ closeTimeoutMs: 300 });
    const answering = await h.connect('/echo');
    h.mount.registry.close(answering.connectionId, 4002, 'host says bye');
    expect(await answering.closed).toEqual({ code: 4002, reason: 'host says bye' });
    // Reads the close and never answers it.
    const silent = rawClient(h.url('/echo'));
    const silentId = () => h.mount.registry.list('/echo').find((c) => c.id !== answering.connectionId)?.id;
    await eventually(() => silentId() !== undefined, 'the silent client connected');
    h.mount.registry.close(silentId()!, 4003, 'and you');
    await eventually(() => h.lab.events.filter((e) => e.event === 'disconnect').length === 2, 'both disconnect handlers ran');
    // Before: the client's echo without the reason, and 1006 with none for the silent one.
    expect(h.lab.events.filter((e) => e.event === 'disconnect').map(({ code, reason }) => ({ code, reason })).sort((a, b) => Number(a.code) - Number(b.code))).toEqual([
      { code: 4002, reason: 'host says bye' },
      { code: 4003, reason: 'and you' },
    ]);
    await silent.closed;
  });
});

describe('connections the client closes', () => {
  it("one whose client sends its close and never ends its TCP side loses its socket after closeTimeoutMs, not ws's 30 s: it does not hold a place of maxConnections meanwhile", async () => {
    const h = await setup({ maxConnections: 1, closeTimeoutMs: 300 });
    const close = clientFrame(0x8, Buffer.concat([Buffer.from([0x03, 0xe8]), Buffer.from('bye')]));
    const client = halfOpenRawClient(h.url('/echo'), true);
    await eventually(() => h.mount.stats().connections === 1, 'the client connected');
    client.socket.write(close);
    // Before: counted, registered and holding the only place for 30 s.
    await eventually(() => h.mount.stats().connections === 0, 'the socket ended after closeTimeoutMs', 5_000);
    expect((await upgradeStatus(h.url('/echo'))).status).toBe(101);
    client.socket.destroy();
  });
  it('one whose client ends its TCP side without a close while a reply still waits to go out to it, and reads no more, loses its socket after closeTimeoutMs: its place of maxConnections is freed and its disconnect handler runs', async () => {
    const h = await setup({ maxConnections: 1, closeTimeoutMs: 300 });
    const client = halfOpenRawClient(h.url('/flood'), true);
    await eventually(() => h.mount.registry.count('/flood') === 1, 'the client connected');
    client.socket.pause();
    const { id } = h.mount.registry.list('/flood')[0]!;
    // One frame always goes out on an idle socket: 32 MiB, more than the kernel's buffers hold.
    client.socket.write(clientFrame(0x1, Buffer.from(JSON.stringify({ id: 1, data: { size: 32 * 1024 * 1024, count: 1 } }))));
    await eventually(() => (h.mount.registry.get(id)?.bufferedAmount ?? 0) > 0, 'the reply waits to go out');
    client.socket.end();
    // Before: ws ends the socket only once the reply is written, so it stayed open for good
    // (CLOSING, so never pinged either), holding the only place, its disconnect never run.
    await eventually(() => h.mount.stats().connections === 0, 'the socket ended after closeTimeoutMs', 5_000);
    expect(h.mount.stats().executions).toBe(3);
    expect((await upgradeStatus(h.url('/flood'))).status).toBe(101);
    client.socket.destroy();
  });

  it('one whose id the host took over in the registry (unregistered it, registered a connection of its own under that id) leaves the host\'s connection registered when it goes', async () => {
    const h = await setup();
    const client = await h.connect('/echo');
    const session = h.mount.registry.get(client.connectionId)!;
    const own = { id: session.id, channel: session.channel, info: session.info, isOpen: true, bufferedAmount: 0, sendText: () => true, close: () => undefined };
    h.mount.registry.unregister(session.id);
    h.mount.registry.register(own);
    await client.close();
    await eventually(() => h.mount.stats().connections === 0, 'the session ended');
    expect(h.mount.registry.get(session.id)).toBe(own);
    h.mount.registry.unregister(session.id);
  });
});

describe('messages waiting for their turn', () => {
  it("wait as the text that came: a client at maxInFlight with 1 MiB frames of small objects makes the host hold about what it sent, not some twenty times that parsed", async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const h = await setup();
    const client = await h.connect('/slow-parallel'); // concurrency 4, maxInFlight 16
    for (let n = 0; n < 4; n++) client.send({ id: n, data: { gate: 'held', n } });
    // 1 MiB less a little: some 340 000 empty objects once parsed.
    const frames = Array.from({ length: 12 }, (_, i) => `{"id":${4 + i},"data":{"n":${4 + i},"pad":[${'{},'.repeat(340_000)}{}]}}`);
    await eventually(() => h.mount.stats().framesIn >= 4, 'the first four frames read');
    gc();
    const before = process.memoryUsage().heapUsed;
    for (const frame of frames) client.send(frame);
    await eventually(() => h.mount.stats().framesIn >= 16, 'every frame read');
    gc();
    const held = process.memoryUsage().heapUsed - before;
    // 12 MiB on the wire; parsed, the same frames held some 250 MB.
    expect(held).toBeLessThan(80 * 1024 * 1024);
    h.lab.open('held');
    const last = await client.next((f) => f.type === 'reply' && f.replyTo === 15, 30_000);
    expect(last.data).toEqual({ n: 15 });
  }, 60_000);

  it('one past maxInFlight is refused (QUEUE_FULL) before it is parsed: a small frame with its id wherever it is, one over 64 KiB with its id where it comes first', async () => {
    const h = await setup();
    const client = await h.connect('/slow'); // maxInFlight 2
    for (let n = 0; n < 2; n++) client.send({ id: n, data: { gate: 'full', n } });
    await eventually(() => h.mount.stats().framesIn >= 2, 'the two frames read');
    const pad = 'x'.repeat(100 * 1024);
    client.send(`{"data":{"n":2},"id":"small-last"}`);
    client.send(`{"id":"big-first","data":{"pad":"${pad}"}}`);
    client.send(`{"data":{"pad":"${pad}"},"id":"big-last"}`);
    // An id written escaped, as some encoders write every non-ASCII character: 100 characters, 600 in the frame.
    client.send(`{"id":"${'\\u0041'.repeat(100)}","data":{"pad":"${pad}"}}`);
    const refused = () => client.frames.filter((f) => f.type === 'error');
    await eventually(() => refused().length >= 4, 'four refusals');
    expect(refused().map((f) => [f.code, f.replyTo])).toEqual([
      ['QUEUE_FULL', 'small-last'],
      ['QUEUE_FULL', 'big-first'],
      ['QUEUE_FULL', null],
      ['QUEUE_FULL', 'A'.repeat(100)],
    ]);
    h.lab.open('full');
  });
});

describe('subprotocols', () => {
  it('agrees to none a client offers: a channel speaks its own frames, and a client that needs one is not told it is spoken', async () => {
    const h = await setup();
    const plain = await h.connect('/echo');
    expect((await plain.request(1, 'hi')).data).toEqual({ echo: 'hi', id: 1 });
    const offered = new WebSocket(h.url('/echo'), ['graphql-ws', 'x']);
    const failure = await new Promise<Error>((resolve) => offered.once('error', resolve));
    expect(failure.message).toBe('Server sent no subprotocol');
  });
});

describe('host limits are ceilings', () => {
  it('a manifest may lower maxPayload and maxInFlight, never raise them', async () => {
    const h = await setup();
    const greedy = {
      ...labManifest,
      channels: [{ path: '/greedy', handler: 'echo', maxPayload: 50 * 1024 * 1024, maxInFlight: 10_000, concurrency: 1000 }],
    };
    const mount = mountWebSocketChannels(h.server, greedy as never, { backend: h.backend, basePath: '/ceil', heartbeatIntervalMs: 0, maxPayload: 4096, maxInFlightPerConnection: 8 });
    try {
      expect(mount.channels).toEqual([expect.objectContaining({ maxPayload: 4096, maxInFlight: 8, concurrency: 8 })]);
    } finally {
      await mount.unmount();
    }
  });
});

describe('heartbeat', () => {
  it('terminates a peer that stops answering pings and keeps the ones that do', async () => {
    const h = await setup({ heartbeatIntervalMs: 100 });
    const silent = await h.connect('/echo', { autoPong: false });
    const lively = await h.connect('/echo');
    const id = silent.connectionId;
    expect((await silent.closed).code).toBe(1006);
    await eventually(() => h.lab.events.length === 1, 'disconnect of the silent peer');
    expect(h.lab.events[0]).toMatchObject({ connectionId: id, cause: 'heartbeat-timeout' });
    await delay(350);
    expect((await lively.request('still', 1)).type).toBe('reply');
    expect(h.mount.stats().heartbeatTimeouts).toBe(1);
  });
  it('keeps a client that is still taking what is sent to it, though its pong waits behind what it has yet to read (a stream to a slow link)', async () => {
    const h = await setup({ heartbeatIntervalMs: 300, maxBufferedBytes: 256 * 1024 });
    // It answers no ping at all: only the bytes it takes can show it alive.
    const client = await h.connect('/flood', { autoPong: false });
    let pings = 0;
    client.ws.on('ping', () => pings++);
    // Reads in sips, a little every few ms, as a slow link delivers.
    const sips = setInterval(() => {
      client.ws.resume();
      setImmediate(() => client.ws.pause());
    }, 20);
    client.send({ id: 1, data: { size: 16 * 1024, count: 20_000 } });
    // Before: terminated at the tick after its first ping, as a dead peer, while it read the stream.
    await eventually(() => pings >= 4 || h.mount.stats().heartbeatTimeouts > 0, 'four heartbeat ticks, or a timeout');
    expect(h.mount.stats().heartbeatTimeouts).toBe(0);
    // Once it takes nothing more, it is a dead peer: cut off as one.
    clearInterval(sips);
    setImmediate(() => client.ws.pause());
    await eventually(() => h.mount.stats().heartbeatTimeouts === 1, 'the client that took nothing more was cut off');
    // Its place goes at its socket's close, which follows the cut (later on a busy machine).
    await eventually(() => h.mount.registry.count('/flood') === 0, 'the cut client gone from the registry');
    client.terminate();
  });
});

describe('backpressure', () => {
  const LIMIT = 256 * 1024;
  const CHUNK = 'x'.repeat(64 * 1024);

  it('closes a client that does not read once its buffer passes the limit, never buffering more', async () => {
    const h = await setup({ maxBufferedBytes: LIMIT });
    const client = await h.connect('/echo');
    const id = client.connectionId;
    const connection = h.mount.registry.get(id)!;
    client.ws.pause();
    let sent = 0;
    let highWater = 0;
    // Bounded: 2000 × 64 KiB is far past what loopback kernel buffers hold.
    for (; sent < 2000; sent++) {
      if (!h.mount.registry.send(id, CHUNK)) break;
      highWater = Math.max(highWater, connection.bufferedAmount);
    }
    expect(sent).toBeLessThan(2000);
    expect(highWater).toBeLessThanOrEqual(LIMIT + CHUNK.length + 64);
    expect(h.mount.stats().backpressureCloses).toBe(1);
    expect(connection.isOpen).toBe(false);
    await eventually(() => !h.mount.registry.has(id), 'unregistered');
    await eventually(() => h.lab.events.length === 1, 'disconnect ran');
    expect(h.lab.events[0]).toMatchObject({ connectionId: id, code: 1006, cause: 'backpressure' });
    client.ws.resume();
    expect((await client.closed).code).toBe(1006);
  });

  it('counts each waiting frame for more than its bytes: a flood of empty messages to a client that does not read is cut while the host holds about the limit for it, not ten times that', async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const h = await setup();
    const client = await h.connect('/echo');
    const id = client.connectionId;
    const connection = h.mount.registry.get(id)!;
    client.ws.pause();
    gc();
    const before = process.memoryUsage().heapUsed;
    let held = 0;
    let sent = 0;
    // ctx.channel's sends go through the same writer. What the kernel took costs the heap nothing:
    // from when frames wait in the socket's buffer, the heap is looked at every 4000 frames.
    for (; sent < 1_000_000; sent++) {
      if (sent % 4000 === 0 && connection.bufferedAmount > 0) {
        gc();
        held = Math.max(held, process.memoryUsage().heapUsed - before);
      }
      if (!h.mount.registry.send(id, '')) break;
    }
    expect(sent).toBeLessThan(1_000_000);
    expect(h.mount.stats().backpressureCloses).toBe(1);
    // Before: some 140 000 frames of 30 bytes waited under the 4 MiB limit, ~30 MB of the heap.
    expect(held).toBeLessThan(8 * 1024 * 1024);
  });

  it('a frame larger than the limit is the one frame that may go out on an idle socket: a small one right behind it does not cut off a client that reads, and both arrive', async () => {
    const h = await setup({ maxBufferedBytes: LIMIT });
    const client = await h.connect('/echo');
    const id = client.connectionId;
    // 8 MiB: more than loopback's kernel buffers take at once, so most of it waits in the socket's.
    const big = 'b'.repeat(LIMIT * 32);
    // A small frame before it in the same turn (corked with it) as well: a header, the snapshot, a trailer.
    expect(h.mount.registry.send(id, 'before')).toBe(true);
    expect(h.mount.registry.send(id, big)).toBe(true);
    expect(h.mount.registry.send(id, 'after')).toBe(true);
    expect((await client.next((f) => f.data === 'before')).data).toBe('before');
    expect((await client.next((f) => f.data === big)).data).toBe(big);
    expect((await client.next((f) => f.data === 'after')).data).toBe('after');
    expect(h.mount.stats().backpressureCloses).toBe(0);
    expect(await client.request('still', 'open')).toMatchObject({ type: 'reply', data: { echo: 'open' } });
  });

  it('a broadcast of one large frame to clients that do not read is held once, not once per client, and arrives whole as a text frame', async () => {
    const h = await setup();
    const clients = [];
    for (let i = 0; i < 12; i++) clients.push(await h.connect('/echo'));
    for (const client of clients) client.ws.pause();
    // 8 MiB: most of it waits in each socket's buffer (more than loopback's kernel buffers take).
    const big = 'b'.repeat(8 * 1024 * 1024);
    const before = process.memoryUsage().arrayBuffers;
    expect(h.mount.registry.broadcast('/echo', big)).toBe(clients.length);
    const held = process.memoryUsage().arrayBuffers - before;
    // Before: one copy of its bytes per socket (~100 MB here).
    expect(held).toBeLessThan(3 * big.length);
    for (const client of clients) client.ws.resume();
    for (const client of clients) expect((await client.next((f) => f.type === 'message')).data).toBe(big);
    expect(clients.every((client) => client.frames.every((f) => f.type !== '(binary)'))).toBe(true);
  });

  it('ends a client that floods pings and does not read their pongs, and tells its disconnect handler why (backpressure), not as a client that left', async () => {
    const h = await setup();
    // 40 000 pings of 125 bytes, never a read: the pongs pile up until ws ends the connection.
    const ping = clientFrame(0x9, Buffer.alloc(125, 0x70));
    const flood = rawClient(h.url('/echo'), ...Array.from({ length: 40_000 }, () => ping));
    flood.socket.pause();
    await eventually(() => h.lab.events.some((e) => e.event === 'disconnect'), 'the disconnect handler ran', 20_000);
    // Before: no cause (as a client that left on its own), and counted nowhere.
    expect(h.lab.events.find((e) => e.event === 'disconnect')).toMatchObject({ cause: 'backpressure' });
    expect(h.mount.stats().backpressureCloses).toBe(1);
    flood.socket.destroy();
  });

  it('applies to ctx.channel pushes a handler does not await, and the pushes waiting meanwhile warn the host of no leak', async () => {
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(warning.name);
    process.on('warning', onWarning);
    try {
      const h = await setup({ maxBufferedBytes: LIMIT });
      const client = await h.connect('/flood');
      client.ws.pause();
      // Small pushes: many wait for the buffer at once before it passes the limit.
      client.send({ id: 1, data: { size: 8 * 1024, count: 3000, wait: false } });
      await eventually(() => h.mount.stats().backpressureCloses === 1, 'flooded client closed');
      await eventually(() => h.mount.stats().connections === 0, 'session drained');
      client.ws.resume();
      expect((await client.closed).code).toBe(1006);
      // The pushes after the cut found it closed: dropped, as the registry's own sends would be.
      expect(h.mount.registry.stats().dropped).toBeGreaterThan(0);
      // Warnings are emitted on the next tick.
      await delay(50);
      expect(warnings).not.toContain('MaxListenersExceededWarning');
    } finally {
      process.off('warning', onWarning);
    }
  });
});

describe('a handler that awaits its pushes', () => {
  const LIMIT = 256 * 1024;
  const CHUNK = 'x'.repeat(64 * 1024);
  it('is paced by its client: a client that stops reading for a while is not cut off, and gets every push once it reads', async () => {
    const h = await setup({ maxBufferedBytes: LIMIT });
    const client = await h.connect('/flood');
    client.ws.pause();
    client.send({ id: 1, data: { size: CHUNK.length, count: 400 } });
    await delay(500);
    expect(h.mount.stats().backpressureCloses).toBe(0);
    client.ws.resume();
    expect(await client.next((f) => f.type === 'reply', 30_000)).toMatchObject({ replyTo: 1, data: { sent: 400, delivered: 400 } });
    expect(client.frames.filter((f) => f.type === 'message')).toHaveLength(400);
    expect(h.mount.stats().backpressureCloses).toBe(0);
    // Counted as the registry's own sends are.
    expect(h.mount.registry.stats()).toMatchObject({ messagesSent: 400, dropped: 0 });
  });

  it('waiting on a client that stopped reading costs a few looks a second at its backlog, not one every 5 ms', async () => {
    const h = await setup({ maxBufferedBytes: LIMIT });
    const client = await h.connect('/flood');
    client.ws.pause();
    client.send({ id: 1, data: { size: CHUNK.length, count: 400 } });
    await eventually(() => h.mount.stats().connections === 1 && h.mount.registry.stats().messagesSent > 0, 'the handler is streaming');
    await delay(300);
    // The looks at the backlog are the channels' timers whose callback is named for it.
    const looks = vi.spyOn(globalThis, 'setTimeout');
    try {
      await delay(1000);
      const count = looks.mock.calls.filter(([callback]) => /look$/.test((callback as () => void).name)).length;
      // Before: about 200 in that second (one every 5 ms for as long as the client does not read).
      expect(count).toBeGreaterThan(0);
      expect(count).toBeLessThan(20);
    } finally {
      looks.mockRestore();
    }
    client.ws.resume();
    expect(await client.next((f) => f.type === 'reply', 30_000)).toMatchObject({ replyTo: 1, data: { sent: 400, delivered: 400 } });
  });

  it('is told its pushes no longer go once the connection is gone: send() resolves false', async () => {
    const said: string[] = [];
    const h = await setup({ maxBufferedBytes: LIMIT, onLog: (entry: { message: string }) => said.push(entry.message) });
    const client = await h.connect('/flood');
    client.ws.pause();
    client.send({ id: 1, data: { size: CHUNK.length, count: 400 } });
    await delay(300);
    client.ws.terminate();
    await eventually(() => said.some((line) => line.startsWith('flood over')), 'the handler ended');
    const { sent, delivered } = JSON.parse(said.find((line) => line.startsWith('flood over'))!.slice('flood over '.length)) as { sent: number; delivered: number };
    expect(sent).toBe(400);
    // The pushes it awaited went until the client was gone; every one after that said false.
    expect(delivered).toBeLessThan(400);
    expect(h.mount.stats().backpressureCloses).toBe(0);
  });
});

describe('a handler whose execution ended while it waited on a push', () => {
  const LIMIT = 256 * 1024;
  const CHUNK = 'x'.repeat(64 * 1024);
  const hook = Symbol.for('kb-test:flood-over');
  afterEach(() => {
    delete (globalThis as Record<symbol, unknown>)[hook];
  });

  it('is answered false then, not left waiting (polling) for a client that never reads as long as the connection lives', async () => {
    const over: Array<{ sent: number; delivered: number }> = [];
    (globalThis as Record<symbol, unknown>)[hook] = (counts: { sent: number; delivered: number }) => over.push(counts);
    const h = await setup({ maxBufferedBytes: LIMIT, timeoutMs: 300 });
    const client = await h.connect('/flood');
    client.ws.pause();
    client.send({ id: 1, data: { size: CHUNK.length, count: 400 } });
    // In-process, the handler goes on after its TIMEOUT: the send it awaits says false then, and
    // the next is refused (before, that send waited, polling, as long as the connection lived).
    await eventually(() => over.length === 1, 'the timed-out handler stopped waiting');
    expect(over[0]!.sent).toBeLessThan(400);
    expect(h.mount.stats().backpressureCloses).toBe(0);
    client.ws.resume();
    expect(await client.next((f) => f.type === 'error' && f.replyTo === 1, 30_000)).toMatchObject({ code: 'TIMEOUT' });
  });
});

describe('a handler that calls ctx.channel after its execution ended', () => {
  const hook = Symbol.for('kb-test:late-close');
  afterEach(() => {
    delete (globalThis as Record<symbol, unknown>)[hook];
  });

  it('from a timer it left, without catching: refused, reaching no connection, and not an unhandled rejection in the host (as out of process)', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      let ran = false;
      (globalThis as Record<symbol, unknown>)[hook] = () => (ran = true);
      const h = await setup();
      const client = await h.connect('/echo');
      expect(await client.request('l', 'late-close')).toEqual({ type: 'reply', replyTo: 'l', data: 'scheduled' });
      await eventually(() => ran, 'the timer the handler left ran');
      // A turn for the refusal to settle, and for Node to say a rejection nobody handled.
      await delay(50);
      expect(unhandled).toEqual([]);
      expect(client.ws.readyState).toBe(WebSocket.OPEN);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});

describe('bad frames', () => {
  it('answers malformed frames with VALIDATION_ERROR error frames and stays open', async () => {
    const h = await setup();
    const client = await h.connect('/echo');
    const cases: Array<[string | Buffer, unknown]> = [
      ['{not json', null],
      ['[1,2]', null],
      ['"text"', null],
      [JSON.stringify({ id: { nested: true }, data: 1 }), null],
      [JSON.stringify({ id: 'x'.repeat(300), data: 1 }), null],
      [JSON.stringify({ id: 7, type: 'subscribe', data: 1 }), 7],
      [JSON.stringify({ id: 'u', data: 1, extra: true }), 'u'],
      [Buffer.from([1, 2, 3]), null],
    ];
    for (const [raw, replyTo] of cases) {
      if (typeof raw === 'string') client.ws.send(raw);
      else client.ws.send(raw, { binary: true });
      const frame = await client.next((f) => f.type === 'error');
      expect(frame).toMatchObject({ type: 'error', code: 'VALIDATION_ERROR', replyTo });
      expect(typeof frame.message).toBe('string');
    }
    expect(h.mount.stats().badFrames).toBe(cases.length);
    expect(h.mount.stats().executions).toBe(1); // only connect ran
    expect(await client.request('fine', 'still open')).toMatchObject({ type: 'reply', data: { echo: 'still open' } });
  });

  it('a numeric id past 2^53 - 1 is refused naming the field, not echoed rounded; safe integers and strings are echoed as sent', async () => {
    const h = await setup();
    const client = await h.connect('/echo');
    // Before: a reply with replyTo 9007199254740992 (JSON.parse rounds), which a client that sent
    // 9007199254740993 (a Python or Go int, a JavaScript BigInt written out) could match to nothing.
    for (const raw of ['{"id":9007199254740993,"data":1}', '{"id":-9007199254740993,"data":1}', '{"id":1e300,"data":1}']) {
      client.ws.send(raw);
      const frame = await client.next((f) => f.type === 'error' || f.type === 'reply');
      expect(frame).toMatchObject({ type: 'error', code: 'VALIDATION_ERROR', replyTo: null });
      expect(frame.message).toBe('Frame "id" must be a string of at most 256 characters or a number of at most 2^53 - 1 either side of 0 (a JSON integer past that comes back rounded; send such an id as a string)');
    }
    expect(h.mount.stats().badFrames).toBe(3);
    // A fraction comes back as sent (a client's Math.random() id).
    for (const id of [Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, 0, 0.4257195830174624, '9007199254740993']) {
      expect(await client.request(id, 'kept')).toMatchObject({ type: 'reply', replyTo: id, data: { echo: 'kept' } });
    }
  });

  it("a host whose Object.prototype a library extended (an enumerable `Object.prototype.x = 1`) still has its frames answered: only a frame's own fields are checked", async () => {
    const h = await setup();
    const client = await h.connect('/echo');
    const prototype = Object.prototype as Record<string, unknown>;
    prototype.addedByALibrary = 1;
    try {
      // Before: every frame was refused, "Unknown frame field(s): addedByALibrary".
      expect(await client.request('p', 'polluted host')).toMatchObject({ type: 'reply', replyTo: 'p', data: { echo: 'polluted host' } });
      expect(h.mount.stats().badFrames).toBe(0);
    } finally {
      delete prototype.addedByALibrary;
    }
  });

  it('answers VALIDATION_ERROR when the reply cannot be JSON', async () => {
    const h = await setup();
    const client = await h.connect('/echo');
    expect(await client.request('b', 'bigint')).toMatchObject({ type: 'error', code: 'VALIDATION_ERROR', replyTo: 'b' });
  });

  it.each([
    ['returns nothing', () => undefined],
    ['returns a string', () => 'oops'],
    ['is async', async () => ({ code: 'X', message: 'y' })],
    ['returns a code that is not a string', () => ({ code: 5, message: 'm' })],
    ['returns a message that is not a string', () => ({ code: 'X', message: 42 })],
  ])('a formatError that %s gives way to the default: the client still gets its error frame, with code and message', async (_what, formatError) => {
    const h = await setup({ formatError: formatError as never });
    const client = await h.connect('/echo');
    expect(await client.request('t', 'throw')).toMatchObject({ type: 'error', code: 'HANDLER_ERROR', message: expect.any(String), replyTo: 't' });
  });

  it.each([
    ['is async and rejects', async () => Promise.reject(new Error('the formatter is down'))],
    ["returns another realm's promise (a vm context) that rejects", () => vm.runInNewContext('Promise.reject(new Error("the formatter is down"))')],
  ])('a formatError that %s gives way to the default, and its rejection is not left unhandled (the host\'s end)', async (_what, formatError) => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => void unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const h = await setup({ formatError: formatError as never });
      const client = await h.connect('/echo');
      expect(await client.request('t', 'throw')).toMatchObject({ type: 'error', code: 'HANDLER_ERROR', message: expect.any(String), replyTo: 't' });
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('lets the host reword error frames, and hides server-side messages by default', async () => {
    const h = await setup({ formatError: (error) => ({ code: error.code, message: 'redacted' }) });
    const client = await h.connect('/echo');
    expect(await client.request('t', 'throw')).toEqual({ type: 'error', code: 'HANDLER_ERROR', message: 'redacted', replyTo: 't' });

    const ghost = { id: '@channels-test/ghost', version: '1.0.0', handlers: { h: { entry: './none.mjs' } }, channels: [{ path: '/ghost', handler: 'h' }] };
    await using _ghostMount = mountWebSocketChannels(h.server, ghost, { backend: h.backend, heartbeatIntervalMs: 0 });
    const lost = await TestClient.connect(h.url('/ghost'), { ready: false });
    expect(await lost.closed).toEqual({ code: 1011, reason: 'HANDLER_NOT_FOUND' });
  });
});

describe('routing', () => {
  it('404s unknown paths under basePath and leaves other paths to other listeners', async () => {
    const h = await setup({ basePath: '/ws' });
    expect((await upgradeStatus(h.url('/ws/echo'))).status).toBe(101);
    expect((await upgradeStatus(h.url('/ws/nope'))).status).toBe(404);
    expect((await upgradeStatus(h.url('/ws'))).status).toBe(404);
    // Nobody else listens: better a 404 than a client left hanging.
    expect((await upgradeStatus(h.url('/elsewhere'))).status).toBe(404);

    const teapot = (request: IncomingMessage, socket: import('node:stream').Duplex) => {
      if (request.url?.startsWith('/ws')) return;
      socket.end("HTTP/1.1 418 I'm a Teapot\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    };
    h.server.on('upgrade', teapot);
    try {
      expect((await upgradeStatus(h.url('/elsewhere'))).status).toBe(418);
      expect((await upgradeStatus(h.url('/ws/nope'))).status).toBe(404);
    } finally {
      h.server.off('upgrade', teapot);
    }
  });

  it("without a basePath, leaves the paths of no channel to the server's other 'upgrade' listeners", async () => {
    const h = await setup();
    const teapot = (request: IncomingMessage, socket: import('node:stream').Duplex) => {
      if (request.url === '/elsewhere') socket.end("HTTP/1.1 418 I'm a Teapot\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    };
    h.server.on('upgrade', teapot);
    try {
      expect((await upgradeStatus(h.url('/elsewhere'))).status).toBe(418);
      expect((await upgradeStatus(h.url('/echo'))).status).toBe(101);
    } finally {
      h.server.off('upgrade', teapot);
    }
  });

  it('routes an absolute-form target (http://host/path) by its path as sent, as the same request in origin-form: "..", "%2e%2e" and backslashes are not resolved into another channel', async () => {
    const h = await setup({ basePath: '/ws' });
    const host = new URL(h.url('/')).host;
    expect(await rawTargetStatus(h.url('/'), '/ws/echo')).toBe(101);
    expect(await rawTargetStatus(h.url('/'), `http://${host}/ws/echo`)).toBe(101);
    expect(await rawTargetStatus(h.url('/'), `ws://${host}/ws/echo?x=1`)).toBe(101);
    // Origin-form: no channel has three segments under /rooms; a room named a\..\..\echo is one.
    for (const [path, status] of [['/ws/rooms/x/../../echo', 404], ['/ws/rooms/%2e%2e/echo', 404], ['/ws/rooms/a\\..\\..\\echo', 101]] as const) {
      expect(await rawTargetStatus(h.url('/'), path), path).toBe(status);
      // Before, a URL parser resolved each into /ws/echo: 101 for all three.
      expect(await rawTargetStatus(h.url('/'), `http://${host}${path}`), `absolute ${path}`).toBe(status);
    }
  });

  it('a target that is no path (`*`, the asterisk-form only OPTIONS takes) reaches no channel, not one mounted at the root', async () => {
    const h = await setup();
    const root = mountWebSocketChannels(h.server, { ...labManifest, channels: [{ path: '/', handler: 'echo' }] } as never, { backend: h.backend, heartbeatIntervalMs: 0 });
    try {
      expect(await rawTargetStatus(h.url('/'), '/')).toBe(101);
      expect(await rawTargetStatus(h.url('/'), `http://${new URL(h.url('/')).host}`)).toBe(101);
      // Before: read as the path "", which is the root's: 101.
      expect(await rawTargetStatus(h.url('/'), '*')).toBe(404);
    } finally {
      await root.unmount();
    }
  });

  it('shares one server between mounts and refuses a path that is already mounted', async () => {
    const h = await setup({ basePath: '/v1' });
    const second = mountWebSocketChannels(h.server, labManifest as never, { backend: h.backend, basePath: '/v2', heartbeatIntervalMs: 0 });
    expect(h.server.listenerCount('upgrade')).toBe(1);
    const a = await h.connect('/v1/echo');
    const b = await h.connect('/v2/echo');
    expect(await a.request(1, 'a')).toMatchObject({ data: { echo: 'a' } });
    expect(await b.request(1, 'b')).toMatchObject({ data: { echo: 'b' } });
    expect(() => mountWebSocketChannels(h.server, labManifest as never, { backend: h.backend, basePath: '/v2/' })).toThrow(ValidationError);
    await second.unmount();
    expect((await b.closed).code).toBe(1001);
    expect(h.server.listenerCount('upgrade')).toBe(1);
    expect((await upgradeStatus(h.url('/v2/echo'))).status).toBe(404);
  });

  it("a static path of a later mount wins over an earlier mount's parameterised one, as within one mount", async () => {
    const h = await setup();
    // The lab mount (made first) has /rooms/:room; this one, the static /rooms/lobby, served by the chat handler.
    const lobby = mountWebSocketChannels(h.server, { ...labManifest, channels: [{ path: '/rooms/lobby', handler: 'chat' }] } as never, { backend: h.backend, heartbeatIntervalMs: 0 });
    try {
      const inLobby = await h.connect('/rooms/lobby');
      const elsewhere = await h.connect('/rooms/kitchen');
      expect(await inLobby.request(1, { text: 'hi' })).toMatchObject({ data: { sent: 0 } });
      expect(await elsewhere.request(1, 'x')).toMatchObject({ data: { echo: 'x' } });
    } finally {
      await lobby.unmount();
    }
  });

  it('among channels of two mounts that match a path with as many parameters, the mount made first takes it', async () => {
    const h = await setup();
    // The lab mount (made first) has /rooms/:room (echo); this one /:place/kitchen (chat): one parameter each.
    const later = mountWebSocketChannels(h.server, { ...labManifest, channels: [{ path: '/:place/kitchen', handler: 'chat' }] } as never, { backend: h.backend, heartbeatIntervalMs: 0 });
    try {
      const kitchen = await h.connect('/rooms/kitchen');
      const elsewhere = await h.connect('/garden/kitchen');
      expect(await kitchen.request(1, 'x')).toMatchObject({ data: { echo: 'x' } });
      expect(await elsewhere.request(1, { text: 'hi' })).toMatchObject({ data: { sent: 0 } });
    } finally {
      await later.unmount();
    }
  });

  it('lets go of the socket of a refused upgrade once its answer is written, though the client keeps its side open', async () => {
    const h = await setup();
    const connections = () => new Promise<number>((resolve, reject) => h.server.getConnections((error, count) => (error ? reject(error) : resolve(count))));
    const client = halfOpenRawClient(h.url('/nowhere'), true);
    await eventually(() => client.received().startsWith('HTTP/1.1 404'), 'the 404');
    // Before: the server only ended its side, and held the socket for as long as the client held its own.
    await eventually(async () => (await connections()) === 0, 'the socket let go');
    client.socket.destroy();
  });

  it('a static path of a mount wins over its parameterised one whichever the manifest lists first', async () => {
    const h = await setup({ basePath: '/lab' });
    const listedAfter = mountWebSocketChannels(h.server, { ...labManifest, channels: [{ path: '/rooms/:room', handler: 'echo' }, { path: '/rooms/lobby', handler: 'chat' }] } as never, { backend: h.backend, heartbeatIntervalMs: 0 });
    try {
      const inLobby = await h.connect('/rooms/lobby');
      const elsewhere = await h.connect('/rooms/kitchen');
      expect(await inLobby.request(1, { text: 'hi' })).toMatchObject({ data: { sent: 0 } });
      expect(await elsewhere.request(1, 'x')).toMatchObject({ data: { echo: 'x' } });
    } finally {
      await listedAfter.unmount();
    }
  });

  it("a channel's own timeoutMs in the manifest wins over the host's timeoutMs option", async () => {
    const h = await setup({ basePath: '/lab' });
    const limited = mountWebSocketChannels(h.server, { ...labManifest, channels: [{ path: '/held', handler: 'slow', timeoutMs: 300 }] } as never, { backend: h.backend, heartbeatIntervalMs: 0, timeoutMs: 60_000, onError: () => undefined });
    try {
      const client = await h.connect('/held');
      client.send({ id: 1, data: { gate: 'never', n: 1 } });
      expect(await client.next((f) => f.type === 'error' && f.replyTo === 1, 10_000)).toMatchObject({ code: 'TIMEOUT' });
    } finally {
      h.lab.openAll();
      await limited.unmount();
    }
  });

  it('refuses upgrades past maxConnections with 503', async () => {
    const h = await setup({ maxConnections: 1 });
    await h.connect('/echo');
    expect((await upgradeStatus(h.url('/echo'))).status).toBe(503);
  });

  it('refuses a request that can never become a WebSocket (not GET, no websocket Upgrade, a bad key or version) before authenticate runs or it takes a place under maxConnections', async () => {
    let calls = 0;
    const h = await setup({ maxConnections: 2, authenticate: async () => {
      calls++;
      await delay(300);
      return { allow: true as const, identity: 'someone' };
    } });
    const { host } = new URL(h.url('/'));
    const request = (method: string, headers: string) => `${method} /echo HTTP/1.1\r\nHost: ${host}\r\nConnection: Upgrade\r\n${headers}\r\n`;
    const key = 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n';
    const bogus: Array<[string, number]> = [
      [request('POST', `Upgrade: websocket\r\n${key}Sec-WebSocket-Version: 13\r\n`), 405],
      [request('GET', `Upgrade: h2c\r\n${key}Sec-WebSocket-Version: 13\r\n`), 400],
      [request('GET', 'Upgrade: websocket\r\nSec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n'), 400],
      // A key of the right length without its padding: ws would refuse it too, after authenticate.
      [request('GET', 'Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ\r\nSec-WebSocket-Version: 13\r\n'), 400],
      [request('GET', `Upgrade: websocket\r\n${key}Sec-WebSocket-Version: 99\r\n`), 400],
      // ws refuses these too, after the handshake's other checks: a subprotocol list with an empty or repeated name.
      [request('GET', `Upgrade: websocket\r\n${key}Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat,,x\r\n`), 400],
      [request('GET', `Upgrade: websocket\r\n${key}Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, chat\r\n`), 400],
      // A no-break space after a name: String.trim took it, ws does not.
      [request('GET', `Upgrade: websocket\r\n${key}Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat\u00a0\r\n`), 400],
    ];
    const statuses = await Promise.all(bogus.map(([text]) => rawRequestStatus(h.url('/'), text)));
    expect(statuses).toEqual(bogus.map(([, status]) => status));
    // Before: authenticate ran for each, and the two first held both places: a real client got 503.
    expect(calls).toBe(0);
    expect((await upgradeStatus(h.url('/echo'))).status).toBe(101);
    expect(h.mount.stats().upgradesRejected).toEqual({ 400: 7, 405: 1 });
    // What ws takes gets through: a version it reads as 13, a subprotocol list with spaces and tabs around names.
    expect(await rawRequestStatus(h.url('/'), request('GET', `Upgrade: websocket\r\n${key}Sec-WebSocket-Version: 013\r\nSec-WebSocket-Protocol: chat ,\tsuperchat\r\n`))).toBe(101);
    // What the refusals say besides: the methods a WebSocket takes, and the versions this server speaks (RFC 6455 §4.4), as ws's own refusal did.
    expect((await rawResponseHead(h.url('/'), bogus[0]![0])).headers).toContain('Allow: GET');
    expect((await rawResponseHead(h.url('/'), bogus[4]![0])).headers).toContain('Sec-WebSocket-Version: 13, 8');
  });

  it('takes an upgrade of version 8 as ws does: the versions its refusals name are 13 and 8', async () => {
    const h = await setup();
    const { host } = new URL(h.url('/'));
    const request = `GET /echo HTTP/1.1\r\nHost: ${host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n`;
    expect(await rawRequestStatus(h.url('/'), request)).toBe(101);
  });

  it('takes an Upgrade header in any case ("WebSocket", as some clients send it), as HTTP and ws do', async () => {
    const h = await setup();
    const { host } = new URL(h.url('/'));
    const request = `GET /echo HTTP/1.1\r\nHost: ${host}\r\nConnection: Upgrade\r\nUpgrade: WebSocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`;
    expect(await rawRequestStatus(h.url('/'), request)).toBe(101);
  });

  it('an upgrade whose client resets while a slow authenticate runs frees its place under maxConnections at once; twice maxConnections of those still running refuse more (503)', async () => {
    let calls = 0;
    let slow = true;
    const h = await setup({ maxConnections: 1, authenticateTimeoutMs: 30_000, authenticate: () => (++calls, slow ? delay(20_000).then(() => true) : true) });
    const upgradeThenReset = async (waiting: number) => {
      const { socket } = rawClient(h.url('/echo'));
      await eventually(() => h.mount.stats().authenticating === 1, `upgrade ${waiting} in authenticate`);
      socket.resetAndDestroy();
      // Well within its hook's 20 s: the reset freed its place.
      await eventually(() => h.mount.stats().authenticating === 0, 'its place freed when its client reset', 3000);
    };
    await upgradeThenReset(1);
    slow = false;
    const reconnected = await h.connect('/echo');
    expect(calls).toBe(2);
    reconnected.terminate();
    await eventually(() => h.mount.stats().connections === 0, 'the reconnect closed');
    slow = true;
    await upgradeThenReset(2);
    // Two hooks still run for clients that left (twice maxConnections): the next is refused, and no hook is called for it.
    expect((await upgradeStatus(h.url('/echo'))).status).toBe(503);
    expect(calls).toBe(3);
  });

  it('maxConnections counts open connections: a closed one whose message still runs does not refuse a reconnect; twice maxConnections alive in all does', async () => {
    const h = await setup({ maxConnections: 1 });
    const leaveWithWorkRunning = async (gate: string, n: number) => {
      const client = await h.connect('/slow');
      client.send({ id: n, data: { gate, n } });
      await eventually(() => h.lab.entered.includes(n), `message ${n} started`);
      await client.close();
    };
    await leaveWithWorkRunning('first', 1);
    await eventually(() => h.mount.registry.count() === 0, 'the first connection closed');
    expect(h.mount.stats()).toMatchObject({ connections: 1 });
    // Nothing is open: the client may come back while its old connection's work finishes.
    const second = await h.connect('/slow');
    expect(h.mount.stats()).toMatchObject({ connections: 2, closingConnections: 1 });
    expect((await upgradeStatus(h.url('/echo'))).status).toBe(503);
    second.send({ id: 2, data: { gate: 'second', n: 2 } });
    await eventually(() => h.lab.entered.includes(2), 'message 2 started');
    await second.close();
    await eventually(() => h.mount.registry.count() === 0, 'the second connection closed');
    expect(h.mount.stats()).toMatchObject({ connections: 2, closingConnections: 2 });
    // Two alive (twice maxConnections), though none is open: closing ones are bounded too.
    expect((await upgradeStatus(h.url('/echo'))).status).toBe(503);
    h.lab.open('first');
    await eventually(() => h.mount.stats().connections === 1, 'the first connection done');
    const third = await h.connect('/echo');
    expect((await third.request('x', 'hi')).data).toEqual({ echo: 'hi', id: 'x' });
  });

  it('rejects bad options and manifests without channels', async () => {
    const h = await setup();
    expect(() => mountWebSocketChannels(h.server, labManifest as never, {} as never)).toThrow(/backend/);
    expect(() => mountWebSocketChannels(h.server, labManifest as never, { backend: h.backend, maxPayload: -1, basePath: '/x' })).toThrow(
      /maxPayload: must be an integer from 1 to 104857600/,
    );
    // Like every backend's options: an unknown one is refused, with the nearest known name.
    expect(() => mountWebSocketChannels(h.server, labManifest as never, { backend: h.backend, heartbeatIntervalMS: 5 } as never)).toThrow(
      /heartbeatIntervalMS: unknown option; did you mean "heartbeatIntervalMs"\?/,
    );
    expect(() =>
      mountWebSocketChannels(h.server, { id: '@x/none', version: '1', handlers: { a: { entry: './a.mjs' } } }, { backend: h.backend }),
    ).toThrow(/declares no "channels"/);
    expect(() => mountWebSocketChannels(h.server, labManifest as never, { backend: h.backend, basePath: 'no-slash' })).toThrow(/basePath/);
    expect(() => mountWebSocketChannels(null as never, labManifest as never, { backend: h.backend })).toThrow(/needs an http or https server \(with \.on\('upgrade'\)\), got null/);
    expect(h.server.listenerCount('upgrade')).toBe(1);
  });

  it('refuses a plugin folder path or file: URL given as the manifest (what a backend takes), saying to give the parsed kb.plugin.json', async () => {
    const h = await setup();
    const refusal = (source: unknown): ValidationError => {
      try {
        mountWebSocketChannels(h.server, source as never, { backend: h.backend, basePath: '/path' });
      } catch (error) {
        return error as ValidationError;
      }
      throw new Error('mounted');
    };
    const folder = refusal('./plugins/chat/');
    expect(folder).toBeInstanceOf(ValidationError);
    expect(folder.details.issues).toEqual([
      {
        path: '(root)',
        message:
          'is a path ("./plugins/chat/"), not a manifest: give the manifest object, its kb.plugin.json parsed (JSON.parse(fs.readFileSync("./plugins/chat/kb.plugin.json", \'utf8\'))), or a registered plugin',
      },
    ]);
    expect(refusal(new URL('file:///srv/plugins/chat/kb.plugin.json')).message).toContain('(JSON.parse(fs.readFileSync(new URL("file:///srv/plugins/chat/kb.plugin.json"), \'utf8\')))');
    expect(h.server.listenerCount('upgrade')).toBe(1);
  });

  it('refuses at mount a static context every execution would refuse, naming the field: a wrong type, a misspelt permissions, a host of its own, a value that cannot reach a runner', async () => {
    const h = await setup();
    const mount = (context: unknown) => () => mountWebSocketChannels(h.server, labManifest as never, { backend: h.backend, basePath: '/ctx', context: context as never });
    expect(mount({ tenantId: 5 })).toThrow(/context\.tenantId: .*string/i);
    expect(mount({ permissions: { network: 'yes' } })).toThrow(/context\.permissions\.network/);
    expect(mount({ premissions: { network: true } })).toThrow(/context\.premissions: unknown field; did you mean "permissions"\?/);
    expect(mount({ host: { kind: 'rest' } })).toThrow(/context\.host is set by the channel/);
    expect(mount({ config: { format: () => 'x' } })).toThrow(ValidationError);
    expect(mount({ config: { format: () => 'x' } })).toThrow(/context\.config\.format/);
    // None of them mounted: the server's only upgrade listener is the harness's own mount.
    expect(h.server.listenerCount('upgrade')).toBe(1);
    expect(await upgradeStatus(h.url('/ctx/echo'))).toMatchObject({ status: 404 });
  });

  it('a context function whose fields every execution would refuse closes the connection (1011, phase context) saying which, rather than failing each message', async () => {
    const errors: Array<{ phase: string; message: string }> = [];
    const h = await setup({
      context: () => ({ tenantId: 7 }) as never,
      onError: (error, info) => errors.push({ phase: info.phase, message: (error as Error).message }),
    });
    const client = await h.connect('/echo', { ready: false });
    expect(await client.closed).toEqual({ code: 1011, reason: 'context' });
    expect(errors).toEqual([{ phase: 'context', message: expect.stringMatching(/context\.tenantId/) }]);
  });

  it("a backend's shutdown({ timeoutMs }) shorter than closeTimeoutMs: the socket of a client that never answers the close goes at that timeout, not at closeTimeoutMs", async () => {
    const errors: string[] = [];
    const h = await setup({ closeTimeoutMs: 5000, onError: (error, info) => errors.push(`${info.phase}: ${(error as Error).message}`) });
    // Reads (the 101, the ready frame and the close frame) and never answers.
    let socketClosed = false;
    void rawClient(h.url('/echo')).closed.then(() => (socketClosed = true));
    await eventually(() => h.mount.stats().connections === 1, 'connected');
    await h.backend.shutdown({ timeoutMs: 200 });
    // Before: the mount went on waiting closeTimeoutMs (5 s) for the close, the backend long shut down.
    await eventually(() => socketClosed && h.mount.stats().connections === 0, 'the socket gone soon after the shutdown', 2500);
    // Its disconnect handler ran on the live backend, in the half of the time left to it.
    expect(errors).toEqual([]);
  });

  it('refuses to mount on a backend that is shut down (its clients would wait for an answer that never comes), and mounts on a live one as before', async () => {
    const h = await setup();
    const backend = new InProcessBackend({ plugins: [], workspace: false });
    await backend.shutdown();
    expect(() => mountWebSocketChannels(h.server, labManifest as never, { backend, basePath: '/late' })).toThrow(
      expect.objectContaining({ code: 'SHUTTING_DOWN', message: 'Cannot mount channels on a backend that is shut down (its in-process backend takes no executions)' }),
    );
    expect(h.server.listenerCount('upgrade')).toBe(1);
    // Asking a live backend leaves nothing registered: its shutdown still unmounts what is mounted on it once.
    const live = new InProcessBackend({ plugins: [], workspace: false });
    const mount = mountWebSocketChannels(h.server, labManifest as never, { backend: live, basePath: '/live', heartbeatIntervalMs: 0 });
    expect(mount.unmounted).toBe(false);
    await live.shutdown();
    expect(mount.unmounted).toBe(true);
  });
});

describe('closing', () => {
  it('by default still runs messages received before the client left', async () => {
    const h = await setup();
    const client = await h.connect('/slow');
    client.send({ id: 1, data: { gate: 'late', n: 1 } });
    client.send({ id: 2, data: { n: 2 } });
    await eventually(() => h.lab.entered.includes(1), 'message 1 started');
    await client.close();
    const framesOut = h.mount.stats().framesOut;
    h.lab.open('late');
    await eventually(() => h.lab.entered.includes(2), 'message 2 ran after the close');
    await eventually(() => h.mount.stats().connections === 0, 'session drained');
    // Their replies had no one to go to: dropped, not counted as frames sent.
    expect(h.mount.stats().framesOut).toBe(framesOut);
  });

  it('with abortOnClose, aborts what is running and drops what waits; an abort its client caused by leaving is not reported as a failure (as for connect)', async () => {
    const errors: Array<{ phase: string; code: unknown }> = [];
    const h = await setup({ abortOnClose: true, onError: (error, info) => errors.push({ phase: info.phase, code: (error as { code?: unknown }).code }) });
    const client = await h.connect('/slow');
    client.send({ id: 1, data: { gate: 'never', n: 1 } });
    client.send({ id: 2, data: { n: 2 } });
    await eventually(() => h.lab.entered.includes(1), 'message 1 started');
    const framesBefore = h.mount.stats().errorFrames;
    client.terminate();
    await eventually(() => h.mount.stats().failedExecutions === 1, 'message 1 aborted');
    await eventually(() => h.mount.stats().connections === 0, 'session drained');
    expect(h.lab.entered).toEqual([1]);
    expect(errors).toEqual([]);
    // Nothing was sent to the client that had gone.
    expect(h.mount.stats().errorFrames).toBe(framesBefore);
  });

  it('with abortOnClose, a connect its client left during is aborted, and that abort is not reported as a failure either', async () => {
    const errors: Array<{ phase: string; code: unknown }> = [];
    const h = await setup({ abortOnClose: true, onError: (error, info) => errors.push({ phase: info.phase, code: (error as { code?: unknown }).code }) });
    const client = await h.connect('/deny?mode=held', { ready: false });
    await eventually(() => h.lab.entered.includes('connect'), 'connect started');
    client.terminate();
    await eventually(() => h.mount.stats().failedExecutions === 1, 'connect aborted');
    await eventually(() => h.mount.stats().connections === 0, 'session gone');
    expect(errors).toEqual([]);
  });

  it('with abortOnClose, a message aborted because its client went silent (heartbeat-timeout) is not reported as a failure either: the client left, the server only noticed', async () => {
    const errors: Array<{ phase: string; code: unknown }> = [];
    const h = await setup({ abortOnClose: true, heartbeatIntervalMs: 200, onError: (error, info) => errors.push({ phase: info.phase, code: (error as { code?: unknown }).code }) });
    // A raw client answers no ping: a link that died without a FIN or RST, as the server sees it.
    const silent = rawClient(h.url('/slow'), clientFrame(0x1, Buffer.from(JSON.stringify({ id: 1, data: { gate: 'never', n: 1 } }))));
    await eventually(() => h.lab.entered.includes(1), 'message 1 started');
    await eventually(() => h.lab.events.some((e) => e.event === 'disconnect'), 'the disconnect handler ran');
    expect(h.lab.events.filter((e) => e.event === 'disconnect').map((e) => e.cause)).toEqual(['heartbeat-timeout']);
    expect(h.mount.stats()).toMatchObject({ heartbeatTimeouts: 1, failedExecutions: 1 });
    // Before: [{ phase: 'message', code: 'ABORTED' }], and a KB_PLUGIN_CHANNEL_ERROR warning without an onError.
    expect(errors).toEqual([]);
    await silent.closed;
  });

  it('unmount() refuses a timeoutMs setTimeout cannot take (Infinity, 2 ** 31, -1, "5000") or a misspelt option, and unmounts nothing', async () => {
    const h = await setup();
    const client = await h.connect('/slow');
    client.send({ id: 1, data: { gate: 'held', n: 1 } });
    await eventually(() => h.lab.entered.includes(1), 'message started');
    for (const [options, message] of TIMEOUT_OPTION_REFUSALS) {
      const refused = await h.mount.unmount(options as never).catch((error: unknown) => error);
      expect(refused, message).toBeInstanceOf(ValidationError);
      expect((refused as ValidationError).message).toBe(`Invalid unmount() options:\n  - ${message}`);
    }
    // Nothing was unmounted: the client is still there, and its message's reply still comes.
    expect(h.mount.unmounted).toBe(false);
    h.lab.open('held');
    expect(await client.next((f) => f.type === 'reply')).toMatchObject({ replyTo: 1, data: { n: 1 } });
    expect((await client.request(2, { n: 2 })).data).toEqual({ n: 2 });
    await h.mount.unmount({ timeoutMs: 2000 });
    expect((await client.closed).code).toBe(1001);
  });

  it('leaves no timer, listener or connection behind after unmount', async () => {
    // Ref'd timers only: the heartbeat interval is unref'd and so invisible here, the auth timer is not.
    // Counted just around unmount, not against a baseline from before the test: a timer another
    // test left behind can expire meanwhile and hide ours in a before/after comparison.
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    let authenticating = false;
    const authenticate = () => {
      authenticating = true;
      return new Promise<never>(() => {});
    };
    const h = await setup({ heartbeatIntervalMs: 50, authenticate, authenticateTimeoutMs: 60_000 });
    const pending = upgradeStatus(h.url('/echo'));
    await eventually(() => authenticating, 'authenticate called (its timer armed)');
    const during = timers();
    expect(during).toBeGreaterThan(0);
    await h.mount.unmount();
    expect((await pending).status).toBe(503);
    expect(timers()).toBeLessThan(during);
    expect(h.server.listenerCount('upgrade')).toBe(0);
    // Nor its 'close' listener: a host that mounts and unmounts on a long-lived server would pile them up.
    expect(h.server.listenerCount('close')).toBe(0);
    expect(h.mount.stats().connections).toBe(0);
  });

  it('a server that closes unmounts its mount: a long-lived backend keeps nothing of servers that came and went', async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const lab = labPlatform();
    await using backend = new InProcessBackend({ plugins: [labPlugin], workspace: false, platform: lab.platform, permissions: { platform: { events: true } } });
    const mounts: Array<WeakRef<ChannelMount>> = [];
    for (let cycle = 0; cycle < 20; cycle++) {
      const { server, url, close } = await startServer();
      // More mounts on the server than an emitter's default listener limit (10): one 'close' listener for them all.
      const mounted = Array.from({ length: 12 }, (_, n) => mountWebSocketChannels(server, labManifest as never, { backend, basePath: `/ws${n}` }));
      expect(server.listenerCount('close')).toBe(1);
      const client = await TestClient.connect(url('/ws0/echo'));
      expect((await client.request(1, 'hi')).data).toMatchObject({ echo: 'hi' });
      await client.close();
      await close();
      await eventually(() => mounted.every((mount) => mount.unmounted), `the mounts of server ${cycle} unmounted once it closed`);
      expect(server.listenerCount('close')).toBe(0);
      expect(server.listenerCount('upgrade')).toBe(0);
      mounts.push(...mounted.map((mount) => new WeakRef(mount)));
    }
    // Each one's disconnect handler ran on the backend, as on an unmount.
    await eventually(() => lab.events.length === 20, 'every disconnect handler ran');
    // Before: each mount stayed subscribed to the backend's shutdown (with its heartbeat timer) until it shut down.
    await eventually(() => {
      gc();
      return mounts.every((mount) => mount.deref() === undefined);
    }, 'every mount collected');
  });
});

describe('a saturated backend', () => {
  const tight = useChannelHarness((options) => new InProcessBackend({ ...options, maxConcurrency: 1, maxQueue: 0 }));

  it('answers QUEUE_FULL to messages and closes new connections with 1013 (try again later)', async () => {
    const h = await tight();
    const holder = await h.connect('/slow');
    const other = await h.connect('/echo');
    holder.send({ id: 1, data: { gate: 'hold', n: 1 } });
    await eventually(() => h.lab.entered.includes(1), 'the only slot taken');
    expect(await other.request('x', 'hi')).toMatchObject({ type: 'error', code: 'QUEUE_FULL', replyTo: 'x' });
    const late = await h.connect('/echo', { ready: false });
    expect(await late.closed).toEqual({ code: 1013, reason: 'QUEUE_FULL' });
    h.lab.open('hold');
    expect(await holder.next((f) => f.type === 'reply')).toMatchObject({ replyTo: 1 });
    expect(await other.request('y', 'again')).toMatchObject({ type: 'reply', data: { echo: 'again' } });
  });

  it('counts a disconnect retried while the queue is full as one execution, and not as failed once it ran', async () => {
    const h = await tight();
    const holder = await h.connect('/slow');
    const leaving = await h.connect('/echo');
    holder.send({ id: 1, data: { gate: 'hold', n: 1 } });
    await eventually(() => h.lab.entered.includes(1), 'the only slot taken');
    const before = h.mount.stats();
    leaving.close();
    // Its disconnect finds the only slot taken, and is tried again and again meanwhile.
    await delay(300);
    h.lab.open('hold');
    expect(await holder.next((f) => f.type === 'reply')).toMatchObject({ replyTo: 1 });
    await eventually(() => h.mount.stats().connections === 1, 'the disconnect ran');
    const after = h.mount.stats();
    // Since the held message began: the disconnect, once, not failed.
    expect(after.executions - before.executions).toBe(1);
    expect(after.failedExecutions - before.failedExecutions).toBe(0);
  });
});

describe('without onError', () => {
  it('says once, as a process warning, that every connection fails because the plugin is not registered on the backend', async () => {
    const warnings: Array<{ code?: string; message: string }> = [];
    const onWarning = (warning: Error & { code?: string }) => warnings.push({ code: warning.code, message: warning.message });
    process.on('warning', onWarning);
    const backend = new InProcessBackend({ workspace: false });
    const { server, url, close } = await startServer();
    const mount = mountWebSocketChannels(server, labManifest as never, { backend, heartbeatIntervalMs: 0 });
    try {
      for (let i = 0; i < 3; i++) {
        const client = await TestClient.connect(url('/echo'), { ready: false });
        expect((await client.closed).code).toBe(1011);
      }
      await eventually(() => warnings.length > 0, 'a process warning');
      await delay(20);
      const ours = warnings.filter((w) => w.code === 'KB_PLUGIN_CHANNEL_ERROR');
      expect(ours).toHaveLength(1);
      expect(ours[0]!.message).toMatch(/^Channel \/echo, connect: HANDLER_NOT_FOUND: Plugin "@channels-test\/lab" is not registered/);
      expect(ours[0]!.message).toContain('pass onError');
    } finally {
      process.off('warning', onWarning);
      await mount.unmount({ timeoutMs: 2000 });
      await backend.shutdown({ timeoutMs: 2000 });
      await close();
    }
  });
});

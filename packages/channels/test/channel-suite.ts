/**
 * The channel behaviour suite: connect, messages, disconnect and every `ctx.channel` call, with real
 * ws clients on loopback. Written once and run against each backend (like describeConformance), since
 * the point is that channels behave the same wherever the handler runs.
 */
import type { BackendOptions, IExecutionBackend } from '@kb-labs/plugin-execution-core';
import { mountWebSocketChannels, type ChannelMount, type MountWebSocketChannelsOptions } from '@kb-labs/plugin-execution-channels';
import { afterEach, describe, expect, it } from 'vitest';
import { LAB, TestClient, delay, eventually, labManifest, labPlatform, labPlugin, startServer, type Frame } from './helpers.js';
import { describeUnmount } from './unmount-suite.js';

export type ChannelBackendFactory = (options: BackendOptions) => IExecutionBackend;

export interface ChannelHarness {
  backend: IExecutionBackend;
  mount: ChannelMount;
  lab: ReturnType<typeof labPlatform>;
  server: import('node:http').Server;
  url: (p: string) => string;
  connect: (p: string, options?: Parameters<typeof TestClient.connect>[1]) => Promise<TestClient>;
}

/** Build a backend + server + mount for one test, torn down (and checked clean) after it. */
export function useChannelHarness(create: ChannelBackendFactory) {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
  return async function setup(options: Partial<MountWebSocketChannelsOptions> = {}): Promise<ChannelHarness> {
    const lab = labPlatform();
    const backend = create({
      plugins: [labPlugin],
      workspace: false,
      platform: lab.platform,
      permissions: { platform: { events: true, gate: true } },
    });
    const { server, url, close } = await startServer();
    const mount = mountWebSocketChannels(server, labManifest as never, { backend, heartbeatIntervalMs: 0, ...options });
    const clients: TestClient[] = [];
    cleanups.push(async () => {
      lab.openAll();
      for (const client of clients) client.terminate();
      // The order a host shuts down in: the mount first, so disconnect handlers run on a live backend.
      await mount.unmount({ timeoutMs: 2000 });
      await backend.shutdown({ timeoutMs: 2000 });
      // Nothing of the mount is left on the server.
      expect(server.listenerCount('upgrade')).toBe(0);
      expect(mount.stats().connections).toBe(0);
      await close();
    });
    return {
      backend,
      mount,
      lab,
      server,
      url,
      connect: async (p, o) => {
        const client = await TestClient.connect(url(p), o);
        clients.push(client);
        return client;
      },
    };
  };
}

export function describeChannelSuite(name: string, create: ChannelBackendFactory): void {
  describe(`channels on ${name}`, () => {
    const setup = useChannelHarness(create);
    describeMessages(setup);
    describeAcrossConnections(setup);
    describeHostRegistry(setup);
    describeOrderingAndLimits(setup);
    describeConnectAndDisconnect(setup);
    describeUnmount(setup, create);
  });
}

function describeMessages(setup: ReturnType<typeof useChannelHarness>): void {
  describe('messages', () => {
    it('accepts a connection with a ready frame and answers messages with reply frames', async () => {
      const h = await setup();
      const client = await h.connect('/echo');
      expect(client.connectionId).toMatch(/^[0-9a-f-]{36}$/);
      expect(await client.request('a1', { hello: 'world' })).toEqual({ type: 'reply', replyTo: 'a1', data: { echo: { hello: 'world' }, id: 'a1' } });
      expect(await client.request(7, [1, 2, 3])).toEqual({ type: 'reply', replyTo: 7, data: { echo: [1, 2, 3], id: 7 } });
      // No id: the reply still comes (the handler returned something), with replyTo null.
      client.send({ type: 'message', data: 'no-id' });
      expect(await client.next((f) => f.type === 'reply')).toEqual({ type: 'reply', replyTo: null, data: { echo: 'no-id', id: null } });
      // An id always gets an answer, even when the handler returns nothing.
      expect(await client.request('n', 'nothing')).toEqual({ type: 'reply', replyTo: 'n', data: null });
    });

    it('describes the connection in the context descriptor and ctx.channel', async () => {
      const h = await setup({ context: { tenantId: 't-1', config: { room: 'x' } }, allowedHeaders: ['origin', 'x-trace'] });
      const client = await h.connect('/rooms/lobby%20one?user=ann&x=1&x=2', {
        headers: { origin: 'http://example.test', 'x-trace': 'tr-1', 'x-secret': 'do-not-copy' },
      });
      const reply = await client.request('c', 'context');
      const data = reply.data as Record<string, any>;
      expect(data.context).toEqual({
        tenantId: 't-1',
        config: { room: 'x' },
        host: {
          kind: 'ws',
          connection: {
            id: client.connectionId,
            channel: '/rooms/:room',
            path: '/rooms/lobby%20one',
            params: { room: 'lobby one' },
            query: { user: 'ann', x: '2' },
            headers: { origin: 'http://example.test', 'x-trace': 'tr-1' },
            remoteAddress: '127.0.0.1',
          },
        },
      });
      expect(data.channelConnectionId).toBe(client.connectionId);
      expect(data.channelPath).toBe('/rooms/lobby%20one');
      expect(data.input).toEqual({ event: 'message', connectionId: client.connectionId, id: 'c', data: 'context' });
    });

    it('carries path parameters named like Object.prototype members (__proto__, constructor) to authenticate and the handler', async () => {
      const h = await setup();
      const seen: Array<[string, string]>[] = [];
      const manifest = { ...labManifest, channels: [{ path: '/proto/:__proto__/:constructor', handler: 'echo' }] };
      const mount = mountWebSocketChannels(h.server, manifest as never, {
        backend: h.backend,
        heartbeatIntervalMs: 0,
        authenticate: (_request, info) => {
          seen.push(Object.entries(info.params));
          return true;
        },
      });
      try {
        const client = await TestClient.connect(h.url('/proto/lobby/x'));
        const reply = await client.request('c', 'context');
        const { params } = (reply.data as { context: { host: { connection: { params: Record<string, string> } } } }).context.host.connection;
        // Compared as entries: an object literal's `__proto__` key would set its prototype instead.
        expect(Object.entries(params)).toEqual([['__proto__', 'lobby'], ['constructor', 'x']]);
        expect(seen).toEqual([[['__proto__', 'lobby'], ['constructor', 'x']]]);
        expect(Object.entries(mount.registry.get(client.connectionId)!.info.params)).toEqual([['__proto__', 'lobby'], ['constructor', 'x']]);
        client.terminate();
      } finally {
        await mount.unmount({ timeoutMs: 2000 });
      }
    });

    it('sends ctx.channel.send pushes before the reply of the same message', async () => {
      const h = await setup();
      const client = await h.connect('/echo');
      client.send({ id: 'p', data: 'push' });
      expect(await client.next((f) => f.type !== 'ready')).toEqual({ type: 'message', data: { pushed: true } });
      expect(await client.next()).toEqual({ type: 'reply', replyTo: 'p', data: 'after-push' });
    });

    it('a ctx.channel.send of data small in memory but over 64 MiB as JSON (one object under many keys) rejects in the handler, and nothing is pushed', async () => {
      const h = await setup();
      const client = await h.connect('/echo');
      // Before: the host wrote it out, a 70 MB frame (60 KB strings: 480 MB, its event loop held 12 s).
      expect(await client.request('s', 'shared-push')).toEqual({
        type: 'reply',
        replyTo: 's',
        data: { rejected: 'VALIDATION_ERROR', message: expect.stringMatching(/^Channel message data is over 64 MiB written as JSON/) },
      });
      expect(client.frames.filter((f) => f.type === 'message')).toEqual([]);
      client.send({ id: 'p', data: 'push' });
      expect(await client.next((f) => f.type === 'message')).toEqual({ type: 'message', data: { pushed: true } });
    });

    it('turns a failed execution into an error frame and keeps the connection open', async () => {
      const h = await setup();
      const client = await h.connect('/echo');
      expect(await client.request('e', 'throw')).toEqual({ type: 'error', code: 'HANDLER_ERROR', message: 'boom', replyTo: 'e' });
      expect(await client.request('ok', 1)).toMatchObject({ type: 'reply', data: { echo: 1 } });
      // ctx.channel arguments from plugin code are checked.
      expect(await client.request('m', 'bad-method')).toEqual({ type: 'reply', replyTo: 'm', data: { rejected: 'VALIDATION_ERROR' } });
      expect(h.mount.stats()).toMatchObject({ failedExecutions: 1, errorFrames: 1 });
    });

    it('a ctx.channel call with a value that cannot cross (a function) rejects the promise it returned, never throws where it is called', async () => {
      const h = await setup();
      const client = await h.connect('/echo');
      expect(await client.request('u', 'uncloneable')).toEqual({ type: 'reply', replyTo: 'u', data: { rejected: 'VALIDATION_ERROR' } });
      expect(h.mount.stats()).toMatchObject({ failedExecutions: 0, errorFrames: 0 });
    });
  });
}

function describeAcrossConnections(setup: ReturnType<typeof useChannelHarness>): void {
  describe('ctx.channel across connections', () => {
    it('broadcasts to the channel, excluding ids, and sends to one connection', async () => {
      const h = await setup();
      const ann = await h.connect('/chat');
      const bob = await h.connect('/chat');
      expect(await ann.next((f) => f.type === 'message')).toEqual({ type: 'message', data: { joined: bob.connectionId } });

      expect(await bob.request(1, { text: 'hi all' })).toEqual({ type: 'reply', replyTo: 1, data: { sent: 1 } });
      expect(await ann.next((f) => f.type === 'message')).toEqual({ type: 'message', data: { from: bob.connectionId, text: 'hi all' } });

      expect(await ann.request(2, { to: bob.connectionId, text: 'psst' })).toEqual({ type: 'reply', replyTo: 2, data: { delivered: true } });
      expect(await bob.next((f) => f.type === 'message')).toEqual({ type: 'message', data: { from: ann.connectionId, text: 'psst' } });

      // Unknown ids and connections of another channel are out of reach.
      const other = await h.connect('/echo');
      expect(await ann.request(3, { to: 'nobody', text: 'x' })).toMatchObject({ data: { delivered: false } });
      expect(await ann.request(4, { to: other.connectionId, text: 'x' })).toMatchObject({ data: { delivered: false } });
      await delay(50);
      expect(other.frames.filter((f) => f.type === 'message')).toEqual([]);
    });

    it('scopes a broadcast to one path of a parameterised channel on request', async () => {
      const h = await setup();
      const a1 = await h.connect('/rooms/a');
      const a2 = await h.connect('/rooms/a');
      const b1 = await h.connect('/rooms/b');
      expect(await a1.request(1, { broadcast: 'room only', scope: 'path' })).toMatchObject({ data: { reached: 1 } });
      expect(await a2.next((f) => f.type === 'message')).toEqual({ type: 'message', data: 'room only' });
      expect(await a1.request(2, { broadcast: 'everyone' })).toMatchObject({ data: { reached: 2 } });
      expect(await b1.next((f) => f.type === 'message')).toEqual({ type: 'message', data: 'everyone' });
      expect(await a2.next((f) => f.type === 'message')).toEqual({ type: 'message', data: 'everyone' });
      expect(await a1.request(3, { broadcast: 'x', scope: 'galaxy' })).toMatchObject({ type: 'error', code: 'VALIDATION_ERROR' });
      // A misspelt option would have broadcast to everyone.
      expect(await a1.request(4, { broadcast: 'x', more: { exlude: [] } })).toMatchObject({ type: 'error', code: 'VALIDATION_ERROR', message: expect.stringContaining('"exlude"') });
      expect(h.mount.registry.broadcast('/rooms/:room', 'from host', { path: '/rooms/b' })).toBe(1);
      expect(await b1.next((f) => f.type === 'message')).toEqual({ type: 'message', data: 'from host' });
      expect(a1.frames.filter((f) => f.type === 'message')).toEqual([]);
    });

    it('a room is one whatever the spelling of its path (a trailing slash, percent-encoding): the same params, the same scope "path"', async () => {
      const h = await setup();
      const plain = await h.connect('/rooms/lobby');
      const spelt = [await h.connect('/rooms/lobby/'), await h.connect('/rooms/lobb%79'), await h.connect('/rooms/%6C%6F%62%62%79')];
      const other = await h.connect('/rooms/lobby2');
      expect(await spelt[1]!.request(1, { broadcast: 'to the lobby', scope: 'path' })).toMatchObject({ data: { reached: 3 } });
      for (const each of [plain, spelt[0]!, spelt[2]!]) expect(await each.next((f) => f.type === 'message')).toEqual({ type: 'message', data: 'to the lobby' });
      expect(h.mount.registry.broadcast('/rooms/:room', 'from host', { path: '/rooms/lobby' })).toBe(4);
      await delay(50);
      expect(other.frames.filter((f) => f.type === 'message')).toEqual([]);
    });

    it('closes another connection of the channel, and runs its disconnect handler', async () => {
      const h = await setup();
      const ann = await h.connect('/chat');
      const bob = await h.connect('/chat');
      await ann.next((f) => f.type === 'message');
      expect(await ann.request('k', { kick: bob.connectionId })).toMatchObject({ data: { kicked: bob.connectionId } });
      expect(await bob.closed).toEqual({ code: 4000, reason: 'kicked' });
      expect(await ann.next((f) => f.type === 'message')).toEqual({ type: 'message', data: { left: bob.connectionId } });
      await eventually(() => !h.mount.registry.has(bob.connectionId), 'bob unregistered');
      expect(h.mount.registry.list('/chat').map((c) => c.id)).toEqual([ann.connectionId]);
      // One that is not open (gone, unknown, or of another channel) is said so: close resolves false.
      const echo = await h.connect('/echo');
      for (const id of [bob.connectionId, 'no-such-connection', echo.connectionId]) expect(await ann.request(`k-${id}`, { kick: id })).toMatchObject({ data: { notOpen: id } });
      expect(echo.ws.readyState).toBe(echo.ws.OPEN);
    });

    it('closes its own connection with the code and reason it chose; invalid codes are refused', async () => {
      const h = await setup();
      const client = await h.connect('/closer');
      expect(await client.request('b', { bad: true })).toEqual({ type: 'reply', replyTo: 'b', data: { rejected: 'VALIDATION_ERROR' } });
      client.send({ id: 'c', data: {} });
      expect(await client.closed).toEqual({ code: 4001, reason: 'bye' });
    });
  });
}

function describeHostRegistry(setup: ReturnType<typeof useChannelHarness>): void {
  describe('registry from the host', () => {
    it('lists, counts, sends and broadcasts to connections from outside any handler', async () => {
      const h = await setup();
      const ann = await h.connect('/chat');
      const bob = await h.connect('/chat');
      await ann.next((f) => f.type === 'message');
      const echo = await h.connect('/echo');
      const { registry } = h.mount;
      expect(registry.count()).toBe(3);
      expect(registry.count('/chat')).toBe(2);
      expect(registry.channels().sort()).toEqual(['/chat', '/echo']);
      expect(registry.get(echo.connectionId)?.info).toMatchObject({ channel: '/echo', pluginId: LAB, path: '/echo' });

      // Options are checked: a misspelt `exlude` would send to the very connection to leave out.
      for (const [options, path] of [
        [{ exlude: [ann.connectionId] }, 'options.exlude'],
        [{ scope: 'path' }, 'options.scope'],
        [{ exclude: ann.connectionId }, 'options.exclude'],
        [{ path: 5 }, 'options.path'],
        [null, 'options'],
      ] as const) {
        let refused: unknown;
        try {
          registry.broadcast('/chat', { news: 0 }, options as never);
        } catch (error) {
          refused = error;
        }
        expect(refused).toMatchObject({ code: 'VALIDATION_ERROR', details: { path } });
      }
      expect(registry.broadcast('/chat', { news: 1 }, { exclude: [ann.connectionId] })).toBe(1);
      expect(await bob.next((f) => f.type === 'message')).toEqual({ type: 'message', data: { news: 1 } });
      expect(registry.send(echo.connectionId, 'direct')).toBe(true);
      expect(await echo.next((f) => f.type === 'message')).toEqual({ type: 'message', data: 'direct' });
      expect(registry.send('missing', 'x')).toBe(false);
      expect(() => registry.send(echo.connectionId, { n: 1n })).toThrow(/JSON/);
      // Before: sent as a message without data.
      expect(() => registry.send(echo.connectionId, undefined)).toThrow('Channel message data is undefined, which JSON has no form for (send null for a message without data)');
      expect(() => registry.send(echo.connectionId, () => 1)).toThrow('Channel message data is a function, which JSON has no form for');
      // Refused as ctx.channel.close() refuses them (before: closed with a bare 1000, and true).
      for (const [code, reason, said] of [
        [1005, 'x', 'registry.close(): code must be 1000, 1001, 1008, 1011 or 3000-4999, got 1005'],
        ['4000', 'x', 'registry.close(): code must be 1000, 1001, 1008, 1011 or 3000-4999, got "4000"'],
        [4000, 'r'.repeat(124), 'registry.close(): reason must be a string of at most 123 bytes'],
      ] as const) {
        expect(() => registry.close(echo.connectionId, code as never, reason)).toThrow(said);
      }
      expect(registry.has(echo.connectionId)).toBe(true);

      // Two from the chat connect handlers, one from the host.
      expect(registry.stats()).toMatchObject({ connections: 3, open: 3, byChannel: { '/chat': 2, '/echo': 1 }, broadcasts: 3 });
    });
  });
}

function describeOrderingAndLimits(setup: ReturnType<typeof useChannelHarness>): void {
  describe('ordering and limits', () => {
    it('handles the messages of one connection in order by default', async () => {
      const h = await setup();
      const client = await h.connect('/slow');
      client.send({ id: 1, data: { gate: 'first', n: 1 } });
      client.send({ id: 2, data: { n: 2 } });
      await eventually(() => h.lab.entered.includes(1), 'message 1 started');
      await delay(150);
      // Message 2 would run at once if it were not waiting for message 1.
      expect(h.lab.entered).toEqual([1]);
      h.lab.open('first');
      expect(await client.next((f) => f.type === 'reply')).toMatchObject({ replyTo: 1, data: { n: 1 } });
      expect(await client.next((f) => f.type === 'reply')).toMatchObject({ replyTo: 2, data: { n: 2 } });
      expect(h.lab.entered).toEqual([1, 2]);
    });

    it('runs messages side by side when the channel opts into concurrency', async () => {
      const h = await setup();
      const client = await h.connect('/slow-parallel');
      client.send({ id: 1, data: { gate: 'held', n: 1 } });
      client.send({ id: 2, data: { n: 2 } });
      expect(await client.next((f) => f.type === 'reply')).toMatchObject({ replyTo: 2, data: { n: 2 } });
      h.lab.open('held');
      expect(await client.next((f) => f.type === 'reply')).toMatchObject({ replyTo: 1, data: { n: 1 } });
    });

    it('answers QUEUE_FULL once a connection has maxInFlight messages running or waiting', async () => {
      const h = await setup();
      const client = await h.connect('/slow'); // maxInFlight: 2 in the manifest
      client.send({ id: 1, data: { gate: 'g', n: 1 } });
      client.send({ id: 2, data: { n: 2 } });
      client.send({ id: 3, data: { n: 3 } });
      const full = await client.next((f) => f.type === 'error');
      expect(full).toMatchObject({ type: 'error', code: 'QUEUE_FULL', replyTo: 3 });
      expect(full.message).toMatch(/in flight/);
      h.lab.open('g');
      expect(await client.next((f) => f.type === 'reply')).toMatchObject({ replyTo: 1 });
      expect(await client.next((f) => f.type === 'reply')).toMatchObject({ replyTo: 2 });
      expect(h.mount.stats().queueFull).toBe(1);
      expect(h.lab.entered).toEqual([1, 2]);
    });
  });
}

function describeConnectAndDisconnect(setup: ReturnType<typeof useChannelHarness>): void {
  describe('connect and disconnect', () => {
    it('closes with the code and reason of a connect handler that refuses', async () => {
      const h = await setup();
      const refused = await h.connect('/deny', { ready: false });
      expect(await refused.closed).toEqual({ code: 4403, reason: 'no entry' });
      expect(refused.frames).toEqual([]);
      const accepted = await h.connect('/deny?mode=accept');
      expect(accepted.connectionId).toBeTruthy();
      expect(h.mount.stats().denied).toBe(1);
      // A reason past the close frame's 123 bytes is cut between characters, never inside an emoji.
      const long = await h.connect('/deny?mode=emoji', { ready: false });
      expect(await long.closed).toEqual({ code: 4403, reason: '😀'.repeat(30) });
      // A connection connect refused never was one: no disconnect handler runs for it, only for the one let in.
      await eventually(() => h.mount.stats().connections === 1, 'the refused connections are done');
      expect(h.lab.events).toEqual([]);
      await accepted.close();
      await eventually(() => h.lab.events.length === 1, 'the accepted connection disconnected');
      expect(h.lab.events).toEqual([{ event: 'disconnect', connectionId: accepted.connectionId }]);
    });

    it('closes with 1008 when connect fails with PERMISSION_DENIED and 1011 when it crashes', async () => {
      const errors: Array<{ phase: string; code: unknown }> = [];
      const h = await setup({ onError: (error, info) => errors.push({ phase: info.phase, code: (error as { code?: unknown }).code }) });
      const denied = await h.connect('/deny?mode=permission', { ready: false });
      expect(await denied.closed).toEqual({ code: 1008, reason: 'PERMISSION_DENIED' });
      const crashed = await h.connect('/deny?mode=throw', { ready: false });
      expect(await crashed.closed).toEqual({ code: 1011, reason: 'HANDLER_ERROR' });
      expect(errors).toEqual([
        { phase: 'connect', code: 'PERMISSION_DENIED' },
        { phase: 'connect', code: 'HANDLER_ERROR' },
      ]);
      expect(h.mount.registry.count()).toBe(0);
    });

    it('a client that leaves while connect runs is never registered, though connect then accepts; its disconnect handler runs', async () => {
      const h = await setup();
      const client = await h.connect('/deny?mode=held', { ready: false });
      await eventually(() => h.lab.entered.includes('connect'), 'connect started');
      await client.close(4100, 'not waiting');
      await eventually(() => h.mount.stats().closingConnections === 1, 'the server saw it close');
      h.lab.open('connect');
      await eventually(() => h.lab.events.length === 1, 'disconnect handler ran');
      await eventually(() => h.mount.stats().connections === 0, 'session gone');
      // Before: registered after its socket had closed, it stayed in the registry for good.
      expect(h.mount.registry.count()).toBe(0);
      expect(h.mount.registry.stats()).toMatchObject({ connections: 0, registeredTotal: 0 });
    });

    it('runs the disconnect handler with the close code once the client leaves', async () => {
      const h = await setup();
      const client = await h.connect('/echo');
      const id = client.connectionId;
      await client.close(4100, 'see you');
      await eventually(() => h.lab.events.length === 1, 'disconnect handler ran');
      expect(h.lab.events[0]).toEqual({ event: 'disconnect', connectionId: id, code: 4100, reason: 'see you', cause: null, channel: '/echo' });
      await eventually(() => h.mount.stats().connections === 0, 'session gone');
      expect(h.mount.registry.has(id)).toBe(false);
    });
  });
}

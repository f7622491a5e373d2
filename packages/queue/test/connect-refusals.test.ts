// What a host and a worker say when their options cannot work (no server, no plugin), or what they
// connect to is not a NATS server.
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import net, { type AddressInfo } from 'node:net';
import { BASIC, expectError, fixturePlugins } from '@kb-labs/plugin-execution-conformance';
import { ValidationError } from '@kb-labs/plugin-execution-core';
import { QueueBackend, startExecutionWorker } from '@kb-labs/plugin-execution-queue';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { describe, expect, it, vi } from 'vitest';
import { startNatsServer } from '../../../scripts/nats-server.mjs';
import { natsServer, newPool } from './helpers.js';
import { startTcpProxy } from './tcp-proxy.js';

const NO_SERVER = { path: 'connection.servers', message: 'must be a server URL (nats://host:4222) or a non-empty array of them' };

describe('options that cannot work', () => {
  it('a pool, subject prefix or worker id that is not a subject token is refused with the other bad options, each named once', async () => {
    let thrown: unknown;
    try {
      new QueueBackend({ connection: { servers: 'nats://' }, pool: 'a b', subjectPrefix: '', plugins: [fixturePlugins.basic] });
    } catch (error) {
      thrown = error;
    }
    expect((thrown as ValidationError).details.issues).toEqual([
      { path: 'connection.servers', message: '"nats://" is not a server URL such as nats://host:4222' },
      { path: 'pool', message: 'must be 1 to 64 letters, digits, "_" or "-", got "a b"' },
      { path: 'subjectPrefix', message: 'must be a non-empty string' },
    ]);
    const refused = await startExecutionWorker({ connection: { servers: 'nats://127.0.0.1:1' }, pool: '', id: 'x/y', plugins: [fixturePlugins.basic] }).catch((error: unknown) => error);
    expect((refused as ValidationError).details.issues).toEqual([
      { path: 'pool', message: 'must be a non-empty string' },
      { path: 'id', message: 'must be letters, digits, "_" and "-" (64 at most), got "x/y"' },
    ]);
  });

  it("a pool or prefix that would put a deployment's subjects under another's (a layout word: prefix kbexec.a with pool worker), or in NATS's reply subjects (_INBOX), is refused by host and worker", async () => {
    const layout = 'words of the subjects\' layout: its subjects would lie under another pool\'s, whose users could read them';
    const cases: Array<[string, string, { path: string; message: string }]> = [
      ['worker', 'kbexec.a', { path: 'pool', message: `must not be "tasks", "caller", "worker", "presence" or "host" (${layout})` }],
      ['presence', 'kbexec', { path: 'pool', message: `must not be "tasks", "caller", "worker", "presence" or "host" (${layout})` }],
      // Its hosts' inbox, _INBOX.kbexec.p.host.host, lies under pool p's hosts' _INBOX.kbexec.p.host.>.
      ['host', 'kbexec.p', { path: 'pool', message: `must not be "tasks", "caller", "worker", "presence" or "host" (${layout})` }],
      ['p', 'kbexec.p.host', { path: 'subjectPrefix', message: `must not have, after its first token, "tasks", "caller", "worker", "presence" or "host" (${layout})` }],
      ['p', 'kbexec.a.caller', { path: 'subjectPrefix', message: `must not have, after its first token, "tasks", "caller", "worker", "presence" or "host" (${layout})` }],
      ['p', '_INBOX', { path: 'subjectPrefix', message: 'must not start with "_INBOX" (the subjects of NATS replies, which request-reply clients may all read)' }],
    ];
    for (const [pool, subjectPrefix, issue] of cases) {
      let thrown: unknown;
      try {
        new QueueBackend({ connection: { servers: 'nats://127.0.0.1:1' }, pool, subjectPrefix, plugins: [fixturePlugins.basic] });
      } catch (error) {
        thrown = error;
      }
      expect((thrown as ValidationError).details.issues, `${subjectPrefix} ${pool}`).toEqual([issue]);
      const refused = await startExecutionWorker({ connection: { servers: 'nats://127.0.0.1:1' }, pool, subjectPrefix, plugins: [fixturePlugins.basic] }).catch((error: unknown) => error);
      expect((refused as ValidationError).details.issues, `${subjectPrefix} ${pool}`).toEqual([issue]);
    }
    // A layout word as the first token names no other deployment's subjects.
    await new QueueBackend({ connection: { servers: 'nats://127.0.0.1:1' }, pool: 'p', subjectPrefix: 'worker', plugins: [fixturePlugins.basic] }).shutdown();
  });

  it('a prefix and pool whose stream name is longer than NATS takes (255) are refused by host and worker, naming subjectPrefix, before anything connects', async () => {
    const token = 'a'.repeat(64);
    const subjectPrefix = `${token}.${token}.${token}`;
    const said = [{ path: 'subjectPrefix', message: `with pool "${token}" names a stream of 259 characters (the prefix upper-cased, "_", the pool); NATS takes at most 255: shorten subjectPrefix or pool` }];
    let thrown: unknown;
    try {
      new QueueBackend({ connection: { servers: 'nats://127.0.0.1:1' }, pool: token, subjectPrefix, plugins: [fixturePlugins.basic] });
    } catch (error) {
      thrown = error;
    }
    expect((thrown as ValidationError).details.issues).toEqual(said);
    const refused = await startExecutionWorker({ connection: { servers: 'nats://127.0.0.1:1' }, pool: token, subjectPrefix, plugins: [fixturePlugins.basic] }).catch((error: unknown) => error);
    expect((refused as ValidationError).details.issues).toEqual(said);
  });

  it("a workspace root given to the host is said to be unused (the workspace is made on the worker, under its root), once per process, not ignored without a word", () => {
    // In a process of its own: "once per process" is about that process.
    const script = [
      `const { QueueBackend } = await import(${JSON.stringify(import.meta.resolve('@kb-labs/plugin-execution-queue'))});`,
      `for (const root of ['/srv/a', '/srv/b']) await new QueueBackend({ connection: { servers: 'nats://127.0.0.1:1' }, plugins: [${JSON.stringify(fixturePlugins.basic)}], workspace: { root } }).shutdown();`,
      `await new QueueBackend({ connection: { servers: 'nats://127.0.0.1:1' }, plugins: [${JSON.stringify(fixturePlugins.basic)}], workspace: false }).shutdown();`,
    ].join('\n');
    const ran = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' }, timeout: 30_000 });
    expect(ran.status).toBe(0);
    const said = ran.stderr.split('\n').filter((line) => line.includes('[KB_PLUGIN_QUEUE_WORKSPACE_ROOT]'));
    expect(said).toEqual([
      expect.stringContaining("Warning: A queue backend's host does not use its workspace option's root: executions get their workspace on the worker, under the worker's root (startExecutionWorker({ workspace: { root } }), or kb-plugin-exec worker --workspace-root). Said once per process."),
    ]);
  });

  it('streamReplicas above 1 on a server that is no cluster: executions and health() say a cluster is needed, naming the option; out of range is refused', async () => {
    const server = await natsServer();
    const backend = new QueueBackend({ connection: { servers: server.url }, pool: newPool('replicas'), streamReplicas: 3, plugins: [fixturePlugins.basic] });
    try {
      const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }, { timeoutMs: 10_000 });
      expectError(result, 'WORKER_CRASHED');
      expect(result.error.message).toMatch(/^The queue backend cannot make the pool's stream with the copies streamReplicas asks for \(replicas > 1 not supported in non-clustered mode\): more than 1 needs a JetStream cluster/);
      expect((await backend.health()).problems.join('\n')).toMatch(/streamReplicas asks for/);
    } finally {
      await backend.shutdown();
      await server.stop();
    }
    expect(() => new QueueBackend({ streamReplicas: 6, plugins: [fixturePlugins.basic] })).toThrow(/streamReplicas: must be an integer from 1 to 5, got 6/);
  });

  it("a host shut down before it ever connected says its connection is closed, as one that had connected does", async () => {
    const backend = new QueueBackend({ connection: { servers: 'nats://127.0.0.1:1' }, plugins: [fixturePlugins.basic] });
    expect((await backend.stats()).runners).toMatchObject({ connection: 'not-connected' });
    await backend.shutdown();
    // Before: 'not-connected' for ever.
    expect((await backend.stats()).runners).toMatchObject({ connection: 'closed', workersSeen: 0 });
  });

  it('connection.servers empty (a list or a string): host and worker refuse it with one message', async () => {
    for (const servers of [[], '']) {
      let thrown: unknown;
      try {
        new QueueBackend({ connection: { servers }, plugins: [fixturePlugins.basic] });
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(ValidationError);
      expect((thrown as ValidationError).details.issues).toEqual([NO_SERVER]);
      const refused = await startExecutionWorker({ connection: { servers }, plugins: [fixturePlugins.basic] }).catch((error: unknown) => error);
      expect(refused).toBeInstanceOf(ValidationError);
      expect((refused as ValidationError).details.issues).toEqual([NO_SERVER]);
    }
  });

  it('a port number alone (what `--nats 14222` gives), which the client would dial as the IPv4 address 0.0.55.142, is refused by host and worker, with the URL to give', async () => {
    for (const servers of ['14222', ['nats://127.0.0.1:4222', ' 4223 ']]) {
      const port = Array.isArray(servers) ? '4223' : '14222';
      const said = [{ path: 'connection.servers', message: `"${port}" is a port number alone, which the NATS client would read as an IPv4 address: give the server's URL, nats://127.0.0.1:${port} for one on this machine` }];
      let thrown: unknown;
      try {
        new QueueBackend({ connection: { servers }, plugins: [fixturePlugins.basic] });
      } catch (error) {
        thrown = error;
      }
      expect((thrown as ValidationError).details.issues).toEqual(said);
      const refused = await startExecutionWorker({ connection: { servers }, plugins: [fixturePlugins.basic] }).catch((error: unknown) => error);
      expect((refused as ValidationError).details.issues).toEqual(said);
    }
  });

  it('a server that is no URL (blank, no host, a port past 65535, a list joined with a trailing comma) is refused by host and worker, naming it', async () => {
    for (const servers of [' ', 'nats://', 'nats://127.0.0.1:99999', 'nats://127.0.0.1:4222,', ['nats://127.0.0.1:4222', 'a,b']]) {
      const bad = Array.isArray(servers) ? servers[1] : servers;
      const said = [{ path: 'connection.servers', message: `${JSON.stringify(bad)} is not a server URL such as nats://host:4222` }];
      expect(() => new QueueBackend({ connection: { servers }, plugins: [fixturePlugins.basic] })).toThrow(ValidationError);
      try {
        new QueueBackend({ connection: { servers }, plugins: [fixturePlugins.basic] });
      } catch (error) {
        expect((error as ValidationError).details.issues).toEqual(said);
      }
      const refused = await startExecutionWorker({ connection: { servers }, plugins: [fixturePlugins.basic] }).catch((error: unknown) => error);
      expect((refused as ValidationError).details.issues).toEqual(said);
    }
    // What names a server: a URL of any of the client's schemes, or host:port.
    for (const servers of ['127.0.0.1:4222', 'tls://nats.example:4443', 'localhost']) {
      await new QueueBackend({ connection: { servers }, plugins: [fixturePlugins.basic] }).shutdown();
    }
  });

  it('a URL of another scheme (https://, http://, ws://, a typo) is refused by host and worker, naming it: the client would take it for nats:// and send a password in the clear', async () => {
    for (const servers of ['https://127.0.0.1:4222', 'http://127.0.0.1:4222', 'http:/127.0.0.1:4222', 'ws://127.0.0.1:4222', 'nast://127.0.0.1:4222', ['nats://127.0.0.1:4222', 'HTTPS://x:1']]) {
      const bad = Array.isArray(servers) ? servers[1]! : servers;
      const scheme = bad.split(':')[0];
      const said = [{ path: 'connection.servers', message: `${JSON.stringify(bad)} is not a NATS server URL: the client speaks nats:// (and tls://, which requires TLS), not ${scheme}://` }];
      let thrown: unknown;
      try {
        new QueueBackend({ connection: { servers, user: 'alice', pass: 'secret' }, plugins: [fixturePlugins.basic] });
      } catch (error) {
        thrown = error;
      }
      expect((thrown as ValidationError).details.issues).toEqual(said);
      const refused = await startExecutionWorker({ connection: { servers }, plugins: [fixturePlugins.basic] }).catch((error: unknown) => error);
      expect((refused as ValidationError).details.issues).toEqual(said);
    }
    await new QueueBackend({ connection: { servers: 'NATS://127.0.0.1:4222' }, plugins: [fixturePlugins.basic] }).shutdown();
  });

  it('an option the worker sets on its local backend itself, given inside backend (workspace, platform, plugins, maxConcurrency, defaultTimeoutMs), is refused saying where it goes, not overridden without a word', async () => {
    const refused = await startExecutionWorker({
      connection: { servers: 'nats://127.0.0.1:1' },
      plugins: [fixturePlugins.basic],
      backend: { type: 'in-process', workspace: { root: '/srv/ws' }, platform: {}, plugins: [fixturePlugins.basic], maxConcurrency: 4, defaultTimeoutMs: 100 },
    }).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(ValidationError);
    expect((refused as ValidationError).details.issues).toEqual([
      { path: 'backend.workspace', message: "set by the worker: give it as the worker's own `workspace` option" },
      { path: 'backend.platform', message: "set by the worker: give it as the worker's own `platform` option" },
      { path: 'backend.plugins', message: "set by the worker: give them as the worker's own `plugins` option" },
      { path: 'backend.maxConcurrency', message: "set by the worker: give it as the worker's own `concurrency` option" },
      { path: 'backend.defaultTimeoutMs', message: "set by the worker: each execution's time limit comes from its caller, with the task" },
    ]);
  });

  it('a misspelt option inside backend, near one the worker sets, is said with that one and where it goes (the local backend would point at the refused option); one of execute() or of a request is said as made by the worker', async () => {
    const refused = await startExecutionWorker({
      connection: { servers: 'nats://127.0.0.1:1' },
      plugins: [fixturePlugins.basic],
      backend: { type: 'worker-pool', maxConcurency: 4, timeoutMs: 100, onLog: () => {}, pluginId: 'x' },
    }).catch((error: unknown) => error);
    const madeByTheWorker = "not an option of a backend: the worker makes each execution's request and execute() options from its task (what its caller gave)";
    expect((refused as ValidationError).details.issues).toEqual([
      { path: 'backend.maxConcurency', message: 'unknown option; "maxConcurrency" is near it, and set by the worker: give it as the worker\'s own `concurrency` option' },
      { path: 'backend.timeoutMs', message: madeByTheWorker },
      { path: 'backend.onLog', message: madeByTheWorker },
      { path: 'backend.pluginId', message: madeByTheWorker },
    ]);
  });

  it("one of the worker's own options given inside backend (pool, heartbeatMs, concurrency …) is said as the worker's, before it connects, not as the queue backend's", async () => {
    const refused = await startExecutionWorker({
      connection: { servers: 'nats://127.0.0.1:1' },
      plugins: [fixturePlugins.basic],
      backend: { type: 'worker-pool', pool: 'reports', heartbeatMs: 500, maxPayloadBytes: 4096, concurrency: 2, connection: { servers: 'nats://127.0.0.1:1' } },
    }).catch((error: unknown) => error);
    // Before: the worker connected first; then its local backend said "backend.pool: … an option of the queue backend".
    const own = (key: string) => ({ path: `backend.${key}`, message: `the worker's own option, not its local backend's: startExecutionWorker({ ${key}, backend })` });
    expect(refused).toBeInstanceOf(ValidationError);
    expect((refused as ValidationError).details.issues).toEqual(['pool', 'heartbeatMs', 'maxPayloadBytes', 'concurrency', 'connection'].map(own));
  });

  it("a queue host's option given to a worker (queueBound, maxConcurrency, permissions …) is said as the host's and where the worker's own is, not only as unknown", async () => {
    const refused = await startExecutionWorker({
      connection: { servers: 'nats://127.0.0.1:1' },
      plugins: [fixturePlugins.basic],
      queueBound: 100,
      workerLostMs: 3000,
      maxConcurrency: 4,
      permissions: {},
      concurency: 2,
      maxConcurency: 4,
      timeoutMS: 100,
    } as never).catch((error: unknown) => error);
    const hosts = "an option of the queue backend's host, not of a worker: ";
    expect((refused as ValidationError).details.issues).toEqual([
      { path: 'queueBound', message: `${hosts}createExecutionBackend({ type: 'queue', queueBound })` },
      { path: 'workerLostMs', message: `${hosts}createExecutionBackend({ type: 'queue', workerLostMs })` },
      { path: 'maxConcurrency', message: `${hosts}the worker's own limit is its \`concurrency\` option` },
      { path: 'permissions', message: `${hosts}a worker's cap is its local backend's: backend: { type, permissions }` },
      { path: 'concurency', message: 'unknown option; did you mean "concurrency"?' },
      // Near none of the worker's own: the host's option it is near, and the worker's own in its place.
      { path: 'maxConcurency', message: `unknown option; did you mean "maxConcurrency"? (${hosts}the worker's own limit is its \`concurrency\` option)` },
      { path: 'timeoutMS', message: `unknown option; did you mean "defaultTimeoutMs"? (${hosts}each execution's time limit comes from its caller, with the task)` },
    ]);
  });

  it("a local backend's own option given to the worker itself (sandbox, minThreads, cancelGraceMs …) is said with where it goes, inside backend, not only as unknown", async () => {
    const refused = await startExecutionWorker({
      connection: { servers: 'nats://127.0.0.1:1' },
      plugins: [fixturePlugins.basic],
      backend: { type: 'subprocess' },
      sandbox: 'required',
      minThreads: 2,
      cancelGraceMs: 100,
    } as never).catch((error: unknown) => error);
    const runsOn = 'the worker runs executions on, not of the worker: backend:';
    expect((refused as ValidationError).details.issues).toEqual([
      { path: 'sandbox', message: `an option of the subprocess backend ${runsOn} { type: 'subprocess', sandbox }` },
      { path: 'minThreads', message: `an option of the worker-pool backend ${runsOn} { type: 'worker-pool', minThreads }` },
      { path: 'cancelGraceMs', message: `an option of the worker-pool and subprocess backends ${runsOn} { type, cancelGraceMs }` },
    ]);
  });

  it("a connection option given beside it (servers, credsFile) or the server's URL under another name (nats, url) is said as the connection's by host and worker, not only as unknown", async () => {
    const given = { servers: 'nats://127.0.0.1:1', credsFile: '/etc/kb/host.creds', nats: 'nats://127.0.0.1:1', url: 'nats://127.0.0.1:1', plugins: [fixturePlugins.basic] };
    const said = [
      { path: 'servers', message: "not an option here; it is one of the connection's: connection: { servers }" },
      { path: 'credsFile', message: "not an option here; it is one of the connection's: connection: { credsFile }" },
      { path: 'nats', message: "not an option; the NATS server's URL is the connection's servers: connection: { servers: 'nats://host:4222' }" },
      { path: 'url', message: "not an option; the NATS server's URL is the connection's servers: connection: { servers: 'nats://host:4222' }" },
    ];
    let thrown: unknown;
    try {
      new QueueBackend(given as never);
    } catch (error) {
      thrown = error;
    }
    expect((thrown as ValidationError).details.issues).toEqual(said);
    const refused = await startExecutionWorker(given as never).catch((error: unknown) => error);
    expect((refused as ValidationError).details.issues).toEqual(said);
  });

  it('a client certificate without its key (or a key without its certificate) is refused by host and worker, naming connection.tls', async () => {
    const said = [{ path: 'connection.tls', message: 'a client certificate (certFile or cert) and its key (keyFile or key) go together: give both, or neither' }];
    for (const tls of [{ certFile: '/etc/kb/client.pem' }, { key: 'a key' }]) {
      let thrown: unknown;
      try {
        new QueueBackend({ connection: { servers: 'nats://127.0.0.1:1', tls }, plugins: [fixturePlugins.basic] });
      } catch (error) {
        thrown = error;
      }
      expect((thrown as ValidationError).details.issues).toEqual(said);
      const refused = await startExecutionWorker({ connection: { servers: 'nats://127.0.0.1:1', tls }, plugins: [fixturePlugins.basic] }).catch((error: unknown) => error);
      expect((refused as ValidationError).details.issues).toEqual(said);
    }
  });

  it('a worker without plugins is refused: it could run nothing', async () => {
    const refused = await startExecutionWorker({ connection: { servers: 'nats://127.0.0.1:1' }, plugins: [] }).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(ValidationError);
    expect((refused as ValidationError).details.issues).toEqual([{ path: 'plugins', message: 'must name at least one plugin folder: a worker without plugins can run nothing' }]);
  });
});

describe('something that is not a NATS server where the server should be', () => {
  const listeners: Record<string, (socket: net.Socket) => void> = {
    'closes each connection at once': (socket) => socket.destroy(),
    'answers in another protocol': (socket) => socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n'),
    'sends something else and stays': (socket) => socket.write('hello there\r\n'),
    'accepts and says nothing': () => undefined,
  };
  const said: Record<string, string> = {
    'closes each connection at once': 'what answers there closed the connection without a word, where a NATS server first sends its INFO',
    'answers in another protocol': 'what answers there is not a NATS server (its first words: "HTTP/1.1 400 Bad Request")',
    'sends something else and stays': 'what answers there is not a NATS server (its first words: "hello there")',
    'accepts and says nothing': 'what answers there accepted the connection but said nothing in 5 s, where a NATS server first sends its INFO',
  };
  it.each(Object.keys(listeners))('one that %s: host and worker say what it did', async (kind) => {
    const sockets = new Set<net.Socket>();
    const listener = net.createServer((socket) => {
      sockets.add(socket);
      listeners[kind]!(socket);
    });
    listener.listen(0, '127.0.0.1');
    await once(listener, 'listening');
    const servers = `nats://127.0.0.1:${(listener.address() as AddressInfo).port}`;
    try {
      const pool = newPool('not-nats');
      const started = startExecutionWorker({ connection: { servers }, pool, plugins: [fixturePlugins.basic], backend: { type: 'in-process' } });
      await expect(started).rejects.toMatchObject({ name: 'QueueServerError', problem: 'unreachable', message: expect.stringContaining(`The worker could not connect to the NATS server (${servers}): ${said[kind]}`) });
      const backend = new QueueBackend({ connection: { servers }, pool, plugins: [fixturePlugins.basic] });
      try {
        const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }, { timeoutMs: 15_000 });
        expectError(result, 'WORKER_CRASHED');
        expect(result.error.message).toContain(`The queue backend could not connect to the NATS server (${servers}): ${said[kind]}`);
      } finally {
        await backend.shutdown();
      }
    } finally {
      for (const socket of sockets) socket.destroy();
      listener.close();
    }
  });
});

describe('shutdown while the first connection is still being made', () => {
  it('an execution still waiting for it a second on fails SHUTTING_DOWN (it was never sent), shutdown does not wait for the connection, and the connection is closed as soon as it opens', async () => {
    const server = await natsServer();
    const proxy = await startTcpProxy(Number(new URL(server.url).port));
    try {
      // The server's INFO is held: the host's connection is made, not yet opened.
      proxy.cut();
      const backend = new QueueBackend({ connection: { servers: proxy.url }, pool: newPool('first-connect'), plugins: [fixturePlugins.basic] });
      const pending = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }, { timeoutMs: 15_000 });
      await vi.waitFor(() => expect(proxy.connections()).toBe(1), { timeout: 5_000, interval: 10 });
      await backend.shutdown();
      expect(proxy.connections()).toBe(1);
      const result = await pending;
      expectError(result, 'SHUTTING_DOWN');
      expect(result.error.details).toMatchObject({ phase: 'queued' });
      // The server answers after all: the connection opens, and is closed by the backend shut down.
      proxy.restore();
      await vi.waitFor(() => expect(proxy.connections()).toBe(0), { timeout: 10_000, interval: 20 });
    } finally {
      await proxy.close();
      await server.stop();
    }
  });
});

describe('a first connection that opens after shutdown', () => {
  it('makes nothing on the server (no pool stream): it is closed as soon as it opens', async () => {
    const server = await natsServer();
    const proxy = await startTcpProxy(Number(new URL(server.url).port));
    const pool = newPool('opens-after-shutdown');
    try {
      // The server's INFO is held: the host's connection is made, not yet opened.
      proxy.cut();
      const backend = new QueueBackend({ connection: { servers: proxy.url }, pool, plugins: [fixturePlugins.basic] });
      const pending = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }, { timeoutMs: 15_000 });
      await vi.waitFor(() => expect(proxy.connections()).toBe(1), { timeout: 5_000, interval: 10 });
      await backend.shutdown({ timeoutMs: 100 });
      expectError(await pending, 'SHUTTING_DOWN');
      proxy.restore();
      await vi.waitFor(() => expect(proxy.connections()).toBe(0), { timeout: 10_000, interval: 20 });
      const nc = await connect({ servers: server.url });
      try {
        const jsm = await jetstreamManager(nc);
        expect(await jsm.streams.names().next()).not.toContain(`KBEXEC_${pool}`);
      } finally {
        await nc.close();
      }
    } finally {
      await proxy.close();
      await server.stop();
    }
  });
});

describe('shutdown while the first connection waits on something that says nothing', () => {
  it('makes no further connection there once shut down (the look that explains a failed attempt is for a backend still in use)', async () => {
    let connections = 0;
    const sockets = new Set<net.Socket>();
    const listener = net.createServer((socket) => {
      connections++;
      sockets.add(socket);
    });
    listener.listen(0, '127.0.0.1');
    await once(listener, 'listening');
    const servers = `nats://127.0.0.1:${(listener.address() as AddressInfo).port}`;
    try {
      const backend = new QueueBackend({ connection: { servers }, pool: newPool('silent-shutdown'), plugins: [fixturePlugins.basic] });
      const pending = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }, { timeoutMs: 15_000 });
      await vi.waitFor(() => expect(connections).toBe(1), { timeout: 5_000, interval: 10 });
      await backend.shutdown({ timeoutMs: 500 });
      expectError(await pending, 'SHUTTING_DOWN');
      // The first attempt gives up 5 s after it began; before, a second connection came then.
      await new Promise((resolve) => setTimeout(resolve, 6_500));
      expect(connections).toBe(1);
    } finally {
      for (const socket of sockets) socket.destroy();
      listener.close();
    }
  }, 20_000);
});

describe('health() while the first connection is still being made', () => {
  it('answers within its bound, saying the connection is being made, and the connection goes on', async () => {
    const server = await natsServer();
    const proxy = await startTcpProxy(Number(new URL(server.url).port));
    const backend = new QueueBackend({ connection: { servers: proxy.url }, pool: newPool('health-connect'), plugins: [fixturePlugins.basic] });
    try {
      proxy.cut();
      const health = await backend.health();
      expect(health.ok).toBe(false);
      expect(health.problems).toContain(`the connection to the NATS server (${proxy.url}) is still being made, or the pool's stream read after it: no answer within 2000 ms (it is given up after 5 s)`);
      expect(health.isolation).toMatchObject({ active: 'unknown', reason: 'not connected to the NATS server' });
      // The attempt was not given up: once the server's words come through, the connection is made.
      expect(proxy.connections()).toBe(1);
      proxy.restore();
      await vi.waitFor(async () => expect((await backend.stats()).runners).toMatchObject({ connection: 'connected' }), { timeout: 10_000, interval: 50 });
    } finally {
      await backend.shutdown();
      await proxy.close();
      await server.stop();
    }
  });
});

describe('a NATS server whose max_payload is too small for JetStream', () => {
  it('host and worker refuse it at connect, naming max_payload and what it must be', async () => {
    const server = await startNatsServer({ maxPayload: 300 });
    const said = 'The NATS server takes messages of at most 300 bytes (its max_payload); the queue backend needs at least 1024';
    try {
      const pool = newPool('tiny-payload');
      const started = startExecutionWorker({ connection: { servers: server.url }, pool, plugins: [fixturePlugins.basic], backend: { type: 'in-process' } });
      await expect(started).rejects.toMatchObject({ message: expect.stringContaining(`The worker could not connect to the NATS server (${server.url}): ${said}`) });
      const backend = new QueueBackend({ connection: { servers: server.url }, pool, plugins: [fixturePlugins.basic] });
      try {
        const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }, { timeoutMs: 15_000 });
        expectError(result, 'WORKER_CRASHED');
        expect(result.error.message).toContain(`The queue backend could not connect to the NATS server (${server.url}): ${said}`);
        expect((await backend.health()).problems).toEqual([expect.stringContaining(said)]);
      } finally {
        await backend.shutdown();
      }
    } finally {
      await server.stop();
    }
  });
});

import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { BASIC, GUARDED, HOSTILE, TIMEOUT_OPTION_REFUSALS, expectError, expectOk, fixturePlugins, holdEventLoop, testPlatform, waitFor } from '@kb-labs/plugin-execution-conformance';
import { ValidationError, type ExecutionEvent, type ExecutionResult, type LogEntry, type PermissionSpec, type PluginManifestInput } from '@kb-labs/plugin-execution-core';
import { QueueBackend, startExecutionWorker, type QueueBackendOptions, type QueueRunnerStats } from '@kb-labs/plugin-execution-queue';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AckPolicy, DiscardPolicy, RetentionPolicy, jetstreamManager } from '@nats-io/jetstream';
import { connect, headers as natsHeaders } from '@nats-io/transport-node';
import { startNatsServer } from '../../../scripts/nats-server.mjs';
import { NEWER_VIEW_BYTES, writeNewerViews } from './fixtures/newer-views.mjs';
import { QUEUE_PLUGIN, QUEUE_PROBE, expectEventWarnedInItsPlace, leftWorkspaces, natsServer, newPool, startWorker, startWorkers, type WorkerProcess } from './helpers.js';

const pool = newPool('queue');
let server: { url: string; stop(): Promise<void> } | undefined;
let workers: WorkerProcess[] = [];
let markers: string;
const backends: QueueBackend[] = [];

/** A backend on the shared pool (two workers, two slots each), shut down after the test. */
function make(options: QueueBackendOptions = {}): QueueBackend {
  const backend = new QueueBackend({ connection: { servers: server!.url }, pool, plugins: [fixturePlugins.basic, fixturePlugins.guarded, QUEUE_PLUGIN], platform: testPlatform(), ...options });
  backends.push(backend);
  return backend;
}

/**
 * A rolling upgrade under load: a pool of its own with one worker of the host's version (one slot,
 * busy for `busyMs` with a `mark` that has started) and one of version 2.0.0 (two free slots).
 */
async function upgradeUnderLoad(name: string, busyMs: number) {
  const own = newPool(name);
  const manifest = await probeManifest();
  const current = await startExecutionWorker({ connection: { servers: server!.url }, pool: own, plugins: [QUEUE_PLUGIN], backend: { type: 'in-process' }, concurrency: 1 });
  const other = await startExecutionWorker({ connection: { servers: server!.url }, pool: own, plugins: [{ root: QUEUE_PLUGIN, manifest: { ...manifest, version: '2.0.0' } }], backend: { type: 'in-process' }, concurrency: 2 });
  const backend = make({ pool: own });
  let running!: () => void;
  const started = new Promise<void>((resolve) => (running = resolve));
  const busy = backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'mark', input: { file: path.join(markers, `${name}.log`), ms: busyMs } }, { timeoutMs: 20_000, onEvent: () => running() });
  await started;
  return { current, other, backend, busy };
}

async function probeManifest(): Promise<PluginManifestInput> {
  return JSON.parse(await readFile(path.join(QUEUE_PLUGIN, 'kb.plugin.json'), 'utf8')) as PluginManifestInput;
}

/** The lines the `mark` handler wrote for one execution. */
async function marks(file: string): Promise<string[]> {
  return (await readFile(file, 'utf8').catch(() => '')).split('\n').filter(Boolean);
}

beforeAll(async () => {
  server = await natsServer();
  markers = await mkdtemp(path.join(os.tmpdir(), 'kb-queue-markers-'));
  workers = await startWorkers(2, { natsUrl: server.url, pool, backend: 'worker-pool', concurrency: 2 });
}, 60_000);

afterEach(async () => {
  await Promise.all(backends.splice(0).map((b) => b.shutdown({ timeoutMs: 2000 })));
});

afterAll(async () => {
  await Promise.all(workers.map((w) => w.stop()));
  await server?.stop();
  await rm(markers, { recursive: true, force: true });
});

describe('where it runs', () => {
  it('names the worker (id and host name) in meta, and lists the artifacts of its workspace', async () => {
    const result = await make().execute({ pluginId: BASIC, handlerId: 'writes-workspace', input: { text: 'hi' } });
    expectOk(result);
    expect(workers.map((w) => w.id)).toContain(result.meta.runnerId);
    expect(result.meta.runnerHost).toBe(os.hostname());
    expect(result.meta.artifacts).toEqual(['out/report.txt', 'summary.json']);
    const dir = (result.data as { workspace: string }).workspace;
    expect(workers.some((w) => dir.startsWith(w.workspaceRoot))).toBe(true);
  });

  it('execute() options a local backend takes and a queue host cannot honour are refused at once, naming them: keepWorkspace without workspaces, outputPace', async () => {
    const noWorkspaces = make({ workspace: false });
    const kept = await noWorkspaces.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }, { keepWorkspace: true, timeoutMs: 20_000 });
    expectError(kept, 'VALIDATION_ERROR');
    expect(kept.error.details).toMatchObject({ phase: 'options', issues: [{ path: 'keepWorkspace', message: 'this queue backend runs without workspaces (workspace: false): there is none to keep' }] });
    // Run without one, as that host says: the worker makes none for it (its own workspaces are for hosts that want them).
    const bare = await noWorkspaces.execute({ pluginId: BASIC, handlerId: 'writes-workspace', input: { text: 'none' } }, { timeoutMs: 20_000 });
    expectOk(bare);
    expect(bare.data).toEqual({ workspace: null });
    expect(bare.meta.workspaceDir).toBeUndefined();
    const paced = await make().execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }, { outputPace: () => undefined });
    expectError(paced, 'VALIDATION_ERROR');
    expect(paced.error.details).toMatchObject({ phase: 'options', issues: [{ path: 'outputPace', message: "a queue backend's handlers run on other machines, whose workers pace their output to this host themselves" }] });
    // With workspaces (on the worker), one is kept there.
    const keeps = await make().execute({ pluginId: BASIC, handlerId: 'writes-workspace', input: { text: 'kept' } }, { keepWorkspace: true });
    expectOk(keeps);
    expect(keeps.meta.workspaceDir).toBeDefined();
    await rm(keeps.meta.workspaceDir!, { recursive: true, force: true });
    await rm(`${keeps.meta.workspaceDir!}.kept`, { force: true });
  });

  it('stats() and health(): connection, queue depth, workers seen, isolation behind the network', async () => {
    const backend = make();
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }));
    // On a loaded machine the other worker's answer to the new host's presence query may come after
    // the execution, and a stream read past stats()'s 2 s leaves the depth out: waited for, not assumed.
    await waitFor(async () => {
      const { workersSeen, queueDepth } = (await backend.stats()).runners as QueueRunnerStats;
      return workersSeen === 2 && queueDepth === 0;
    }, 10_000);
    const runners = (await backend.stats()).runners as QueueRunnerStats;
    expect(runners).toMatchObject({ pool, connection: 'connected', queueDepth: 0, queueBound: 1000, inFlight: 0, workersSeen: 2 });
    expect(runners.workers.map((w) => w.id).sort()).toEqual(workers.map((w) => w.id).sort());
    // What each runs, for a rolling upgrade: the plugin versions it said it has.
    for (const worker of runners.workers) {
      expect(worker.plugins).toContain(`${BASIC}@1.0.0`);
      expect(worker.draining).toBe(false);
    }
    const health = await backend.health();
    expect(health.ok).toBe(true);
    expect(health.isolation).toMatchObject({ active: 'thread' });
    expect(health.isolation.layers[0]).toBe('remote-worker');
    // Shut down, it hears nobody: before, the workers last heard stayed listed.
    await backend.shutdown();
    expect((await backend.stats()).runners).toMatchObject({ connection: 'closed', workersSeen: 0, workers: [] });
  });

  it('a pool with no worker: health() says so, and a TIMEOUT says the execution never started and why', async () => {
    const backend = make({ pool: newPool('empty') });
    const health = await backend.health();
    expect(health.ok).toBe(false);
    expect(health.problems.join('\n')).toMatch(/no worker of pool "\S+" is connected/);
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }, { timeoutMs: 300 });
    expectError(result, 'TIMEOUT');
    expect(result.error.message).toMatch(/did not finish within 300 ms: it never started \(no worker of pool "\S+" is connected\)/);
    expect(result.error.details).toMatchObject({ timeoutMs: 300, phase: 'queued' });
    // Taken off the stream: no worker that connects later runs it.
    expect(((await backend.stats()).runners as QueueRunnerStats).queueDepth).toBe(0);
    // Under a subject prefix of its own, the prefix is named: workers started with another one serve another pool.
    const prefixed = make({ pool: newPool('empty'), subjectPrefix: 'custom.kb' });
    expect((await prefixed.health()).problems.join('\n')).toMatch(/no worker of pool "\S+" under subject prefix "custom\.kb" is connected/);
  });

  it('refuses credentials in a server URL (the NATS client does not use them), never showing them', async () => {
    // With a scheme or without, after a blank, with a "/" in the password, with a port that is no port: refused, never quoted.
    for (const servers of ['nats://kb:secret@127.0.0.1:4222', ['nats://127.0.0.1:4222', 'tls://kb:secret@127.0.0.1:4223'], 'kb:secret@127.0.0.1:4222', ' nats://kb:secret@127.0.0.1:4222', 'nats://kb:sec/ret@127.0.0.1:4222', 'nats://kb:secret@127.0.0.1:99999']) {
      let thrown: unknown;
      try {
        make({ connection: { servers } });
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toMatchObject({ code: 'VALIDATION_ERROR', message: expect.stringContaining('give them as connection.user and connection.pass') });
      expect((thrown as Error).message).not.toContain('secret');
    }
    await expect(startExecutionWorker({ connection: { servers: 'nats://kb:secret@127.0.0.1:1' }, pool: newPool('creds'), plugins: [fixturePlugins.basic], backend: { type: 'in-process' } })).rejects.toThrow(
      /connection\.servers: holds credentials/,
    );
  });

  it('an NKey seed read from a file with its line break logs in, and so does a token; a password without a user, a user without a password, or two ways to log in are refused, named', async () => {
    // An NKey user made for this test (not a secret anywhere).
    const seed = 'SUAEF4NQGW2WZLEZLJIVPIULUYU3DTWJIHLA6Y3YWX2FM3LXUHSKMWA6UM';
    const guarded = await startNatsServer({ authorization: '{ users = [ { nkey: UAP5ICZ55ZI3MFGS73675ZZQPLUNRDUU4ATEX4JXZN4TKOL53VD5ZSM5 } ] }' });
    try {
      const own = newPool('nkey');
      const worker = await startExecutionWorker({ connection: { servers: guarded.url, seed: `${seed}\n` }, pool: own, plugins: [fixturePlugins.basic], backend: { type: 'in-process' } });
      try {
        const result = await make({ connection: { servers: guarded.url, seed: `${seed}\r\n` }, pool: own }).execute({ pluginId: BASIC, handlerId: 'echo', input: 'nkey' });
        expectOk(result);
      } finally {
        await worker.close();
      }
    } finally {
      await guarded.stop();
    }
    // A token, on a server that takes nothing else (before, nothing here logged in with connection.token).
    const tokenOnly = await startNatsServer({ authorization: '{ token: "kb-token" }' });
    try {
      const own = newPool('token');
      const worker = await startExecutionWorker({ connection: { servers: tokenOnly.url, token: 'kb-token' }, pool: own, plugins: [fixturePlugins.basic], backend: { type: 'in-process' } });
      try {
        const result = await make({ connection: { servers: tokenOnly.url, token: 'kb-token' }, pool: own }).execute({ pluginId: BASIC, handlerId: 'echo', input: 'token' });
        expectOk(result);
        expect(result.data).toBe('token');
      } finally {
        await worker.close();
      }
    } finally {
      await tokenOnly.stop();
    }
    expect(() => make({ connection: { servers: server!.url, pass: 'alone' } })).toThrow(/connection\.pass: is given without connection\.user: give both, or connection\.token/);
    expect(() => make({ connection: { servers: server!.url, user: 'alone' } })).toThrow(/connection\.user: is given without connection\.pass: give both, or connection\.token/);
    expect(() => make({ connection: { servers: server!.url, user: 'kb', pass: 'secret', token: 't' } })).toThrow(/connection: connection\.user\/pass and connection\.token are given: give one way to log in/);
    const twoWays = startExecutionWorker({ connection: { servers: server!.url, token: 't', credsFile: '/x.creds' }, pool: newPool('two-logins'), plugins: [fixturePlugins.basic], backend: { type: 'in-process' } });
    await expect(twoWays).rejects.toThrow(/connection\.token and connection\.credsFile are given: give one way to log in/);
  });

  it('a tls:// URL to a server that offers no TLS: nothing is sent in clear, host and worker say TLS failed', async () => {
    const tlsUrl = server!.url.replace(/^nats:/, 'tls:');
    const backend = make({ connection: { servers: tlsUrl, user: 'kb', pass: 'secret' } });
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 });
    expectError(result, 'WORKER_CRASHED');
    const said = `could not connect to the NATS server (${tlsUrl}): TLS failed: the server does not offer TLS, which its tls:// URL requires, so nothing was sent to it`;
    expect(result.error.message).toContain(`The queue backend ${said}`);
    const started = startExecutionWorker({ connection: { servers: tlsUrl }, pool: newPool('tls-url'), plugins: [fixturePlugins.basic], backend: { type: 'in-process' } });
    await expect(started).rejects.toMatchObject({ name: 'QueueServerError', problem: 'unreachable', message: expect.stringContaining(`The worker ${said}`) });
  });

  it('health() is not ok, and executions fail clearly, when the server cannot be reached', async () => {
    const backend = make({ connection: { servers: 'nats://127.0.0.1:1' } });
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo' });
    expectError(result, 'WORKER_CRASHED');
    expect(result.error.message).toContain('could not connect to the NATS server');
    const health = await backend.health();
    expect(health.ok).toBe(false);
  });

  it('a server started without JetStream: host and worker say so, and what to do', async () => {
    const plain = await startNatsServer({ jetstream: false });
    try {
      const result = await make({ connection: { servers: plain.url } }).execute({ pluginId: BASIC, handlerId: 'echo' });
      expectError(result, 'WORKER_CRASHED');
      expect(result.error.message).toBe(`The queue backend cannot use the NATS server (${plain.url}): JetStream is not enabled there; start nats-server with -js, or give its config a jetstream {} block`);
      const worker = startExecutionWorker({ connection: { servers: plain.url }, pool: newPool('plain'), plugins: [fixturePlugins.basic], backend: { type: 'in-process' } });
      await expect(worker).rejects.toThrow(`The worker cannot use the NATS server (${plain.url}): JetStream is not enabled there`);
      await expect(worker).rejects.toMatchObject({ name: 'QueueServerError', problem: 'no-jetstream' });
    } finally {
      await plain.stop();
    }
  });

  it('a server whose max_subscriptions refuses what the pool needs: host and worker fail to start, saying so (not "ready" and deaf)', async () => {
    const limited = await startNatsServer({ maxSubscriptions: 2 });
    try {
      const result = await make({ connection: { servers: limited.url } }).execute({ pluginId: BASIC, handlerId: 'echo' });
      expectError(result, 'WORKER_CRASHED');
      expect(result.error.message).toMatch(/^The queue backend cannot use the NATS server \(nats:\/\/127\.0\.0\.1:\d+\): it refuses this connection more subscriptions \(maximum subscriptions exceeded/);
      const worker = startExecutionWorker({ connection: { servers: limited.url }, pool: newPool('limited'), plugins: [fixturePlugins.basic], backend: { type: 'in-process' } });
      await expect(worker).rejects.toMatchObject({ name: 'QueueServerError', problem: 'limit-reached', message: expect.stringContaining("max_subscriptions); a host needs 4, a worker 6") });
    } finally {
      await limited.stop();
    }
  });

  it('max_subscriptions: a host needs more than 3, a worker 6, as the message says', async () => {
    const five = await startNatsServer({ maxSubscriptions: 5 });
    const six = await startNatsServer({ maxSubscriptions: 6 });
    try {
      const refused = startExecutionWorker({ connection: { servers: five.url }, pool: newPool('five'), plugins: [fixturePlugins.basic], backend: { type: 'in-process' } });
      await expect(refused).rejects.toMatchObject({ name: 'QueueServerError', problem: 'limit-reached' });
      const own = newPool('six');
      const worker = await startExecutionWorker({ connection: { servers: six.url }, pool: own, plugins: [fixturePlugins.basic], backend: { type: 'in-process' } });
      try {
        expectOk(await make({ connection: { servers: six.url }, pool: own }).execute({ pluginId: BASIC, handlerId: 'echo', input: 'six' }));
      } finally {
        await worker.close();
      }
    } finally {
      await Promise.all([five.stop(), six.stop()]);
    }
  });

  it("a server whose JetStream memory is used up: QUEUE_FULL saying so (nothing ran), not a crash", async () => {
    const small = await startNatsServer({ maxMemoryStore: 1024 * 1024 });
    try {
      const backend = make({ connection: { servers: small.url }, pool: newPool('store-full') });
      const results = await Promise.all(Array.from({ length: 12 }, () => backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'x'.repeat(200 * 1024) }, { timeoutMs: 2000 })));
      const full = results.filter((r) => !r.ok && r.error.code === 'QUEUE_FULL');
      expect(full.length).toBeGreaterThan(0);
      expect(results.every((r) => !r.ok && (r.error.code === 'QUEUE_FULL' || r.error.code === 'TIMEOUT'))).toBe(true);
      expect(full[0]!.ok ? '' : full[0]!.error.message).toMatch(/has no room left for the tasks of pool "store-full-\w+" \(insufficient resources: its JetStream max_memory_store or max_file_store is used up\); nothing ran/);
    } finally {
      await small.stop();
    }
  });

  it("an account's JetStream refusals are said as such by worker and host: not enabled for the account, its limits (QueueServerError no-jetstream, limit-reached), its storage used up (QUEUE_FULL)", async () => {
    const accounts = [
      'NOJS: { users: [ { user: nojs, password: nojs } ] }',
      'NOSTREAMS: { jetstream: { max_mem: 10M, max_file: 10M, max_streams: 1 }, users: [ { user: nostreams, password: nostreams } ] }',
      'BYTES: { jetstream: { max_mem: 10M, max_file: 10M, max_bytes_required: true }, users: [ { user: bytes, password: bytes } ] }',
      'SMALL: { jetstream: { max_mem: 300K, max_file: 10M }, users: [ { user: small, password: small } ] }',
    ];
    const limited = await startNatsServer({ accounts: `{ ${accounts.join(', ')} }` });
    const as = (user: string) => ({ servers: limited.url, user, pass: user });
    try {
      const taken = await connect(as('nostreams'));
      await (await jetstreamManager(taken)).streams.add({ name: 'TAKEN', subjects: ['taken'] });
      await taken.close();
      const start = (user: string) => startExecutionWorker({ connection: as(user), pool: newPool('acct'), plugins: [fixturePlugins.basic], backend: { type: 'in-process' } });
      const [noJs, noStreams, bytes] = await Promise.allSettled([start('nojs'), start('nostreams'), start('bytes')]);
      expect(noJs).toMatchObject({ reason: { name: 'QueueServerError', problem: 'no-jetstream', message: expect.stringContaining("JetStream is not enabled for its user's account") } });
      expect(noStreams).toMatchObject({ reason: { name: 'QueueServerError', problem: 'limit-reached', message: expect.stringContaining('the JetStream limits of its user\'s account refuse the pool\'s stream or consumer (maximum number of streams reached)') } });
      expect(bytes).toMatchObject({ reason: { name: 'QueueServerError', problem: 'limit-reached', message: expect.stringContaining("its user's account wants every stream to have a max_bytes") } });
      const refused = await make({ connection: as('nostreams'), pool: newPool('acct') }).execute({ pluginId: BASIC, handlerId: 'echo' });
      expectError(refused, 'WORKER_CRASHED');
      expect(refused.error.message).toContain("The queue backend cannot use the NATS server");
      expect(refused.error.message).toContain('maximum number of streams reached');
      // No worker: the tasks stay in the stream until the account's memory is used up.
      const host = make({ connection: as('small'), pool: newPool('acct-full') });
      const results = await Promise.all(Array.from({ length: 8 }, () => host.execute({ pluginId: BASIC, handlerId: 'echo', input: 'x'.repeat(100_000) }, { timeoutMs: 3000 })));
      const full = results.filter((result) => !result.ok && result.error.code === 'QUEUE_FULL');
      expect(full.length, JSON.stringify(results.map((r) => (r.ok ? 'ok' : `${r.error.code}: ${r.error.message}`)))).toBeGreaterThan(0);
      expect(full[0]!.ok ? '' : full[0]!.error.message).toMatch(/The NATS account has no room left for the tasks of pool "acct-full-\w+" \(resource limits exceeded for account: its JetStream max_mem or max_file is used up\); nothing ran/);
      expect(results.every((result) => !result.ok && ['QUEUE_FULL', 'TIMEOUT'].includes(result.error.code))).toBe(true);
    } finally {
      await limited.stop();
    }
  });

  describe('NATS users with permissions', () => {
    const pool = 'perms';
    /** The users of docs/backends/queue.md, "Security", for pool `perms`, less what `without` names. */
    const users = (without: { host?: string; worker?: string } = {}) => {
      const stream = ['$JS.API.INFO', '$JS.API.STREAM.INFO.KBEXEC_perms', '$JS.API.CONSUMER.INFO.KBEXEC_perms.perms-workers'];
      const hostApi = [...stream, '$JS.API.STREAM.CREATE.KBEXEC_perms', '$JS.API.STREAM.UPDATE.KBEXEC_perms', '$JS.API.STREAM.MSG.DELETE.KBEXEC_perms'];
      const workerApi = [...stream, '$JS.API.CONSUMER.CREATE.KBEXEC_perms.perms-workers', '$JS.API.CONSUMER.CREATE.KBEXEC_perms.perms-workers.>', '$JS.API.CONSUMER.MSG.NEXT.KBEXEC_perms.perms-workers'];
      const host = { publish: ['kbexec.perms.tasks', 'kbexec.perms.worker.*', 'kbexec.perms.presence.query', ...hostApi], subscribe: ['_INBOX.kbexec.perms.host.>', 'kbexec.perms.caller.*', 'kbexec.perms.presence'] };
      const worker = { publish: ['kbexec.perms.caller.*', 'kbexec.perms.presence', 'kbexec.perms.presence.query', ...workerApi], subscribe: ['_INBOX.kbexec.perms.worker.>', 'kbexec.perms.worker.*', 'kbexec.perms.presence', 'kbexec.perms.presence.query'] };
      const user = (name: string, p: typeof host, cut?: string) =>
        `{ user: ${name}, password: ${name}-secret, permissions: { publish: ${JSON.stringify(p.publish.filter((x) => x !== cut))}, subscribe: ${JSON.stringify(p.subscribe)}, allow_responses: ${cut !== 'allow_responses'} } }`;
      // An operator's user, with every permission, to make the pool's stream where the host's may not.
      return `{ users = [ ${user('host', host, without.host)}, ${user('worker', worker, without.worker)}, { user: admin, password: admin-secret } ] }`;
    };
    const as = (url: string, user: string) => ({ servers: url, user, pass: `${user}-secret` });
    /** A nats.js connection as `user` (host or worker), its inboxes where that user may subscribe. */
    const raw = (url: string, user: 'host' | 'worker') => connect({ ...as(url, user), inboxPrefix: `_INBOX.kbexec.perms.${user}` });
    /** A server with those users whose pool stream a host made already, as the docs say to start a pool. */
    const permsServer = async (without: { host?: string; worker?: string } = {}) => {
      const server = await startNatsServer({ authorization: users(without) });
      await make({ connection: as(server.url, 'admin'), pool }).health();
      return server;
    };

    it('the users the docs list are enough: an execution runs', async () => {
      const server = await permsServer();
      try {
        const worker = await startExecutionWorker({ connection: as(server.url, 'worker'), pool, plugins: [fixturePlugins.basic], backend: { type: 'in-process' } });
        try {
          const result = await make({ connection: as(server.url, 'host'), pool, maxPayloadBytes: 2 * 1024 * 1024 }).execute({ pluginId: BASIC, handlerId: 'echo', input: 'x'.repeat(1024 * 1024) });
          expectOk(result);
          expect(result.data).toHaveLength(1024 * 1024);
        } finally {
          await worker.close();
        }
      } finally {
        await server.stop();
      }
    });

    it("with those users a worker's credentials reach no further than its pool: no stream of its own on the callers' subjects, no change to the pool's stream, nothing of another stream", async () => {
      const server = await startNatsServer({ authorization: users() });
      try {
        // Before any host made the pool's stream: a worker's user may not make it, so neither one that copies in another stream's messages.
        const early = await raw(server.url, 'worker');
        try {
          const jsm = await jetstreamManager(early, { timeout: 1000 });
          await expect(jsm.streams.add({ name: 'KBEXEC_perms', subjects: ['kbexec.perms.tasks'], sources: [{ name: 'KBEXEC_other' }] })).rejects.toThrow(/Permissions Violation/);
        } finally {
          await early.close();
        }
        const warnings: string[] = [];
        const onWarning = (warning: Error & { code?: string }) => void (warning.code === 'KB_PLUGIN_WORKER_CONNECTION' && warnings.push(warning.message));
        process.on('warning', onWarning);
        const first = startExecutionWorker({ connection: as(server.url, 'worker'), pool, plugins: [fixturePlugins.basic], backend: { type: 'in-process' } });
        await expect(first).rejects.toMatchObject({ name: 'QueueServerError', problem: 'not-permitted', message: expect.stringContaining('start a host of the pool first (it makes the stream), then the worker') });
        await new Promise((resolve) => setImmediate(resolve));
        process.off('warning', onWarning);
        // Its start fails, said once: before, a notice that "it tries again" came first.
        expect(warnings).toEqual([]);
        // A host first (it makes the stream), then the worker; an operator watches where the worker answers the host.
        const host = make({ connection: as(server.url, 'host'), pool });
        await host.health();
        const operator = await connect(as(server.url, 'admin'));
        const callerSubjects = new Set<string>();
        operator.subscribe('kbexec.perms.caller.*', { callback: (_error, msg) => void callerSubjects.add(msg.subject) });
        await (await jetstreamManager(operator)).streams.add({ name: 'KBEXEC_other', subjects: ['kbexec.other.tasks'] });
        const worker = await startExecutionWorker({ connection: as(server.url, 'worker'), pool, plugins: [fixturePlugins.basic], backend: { type: 'in-process' } });
        expectOk(await host.execute({ pluginId: BASIC, handlerId: 'echo', input: 'x' }));
        await worker.close();
        // A message to the host that asks for its answer on a JetStream API subject: the host does not answer it there.
        const deputy = await connect(as(server.url, 'worker'));
        const headers = natsHeaders();
        headers.set('Kb-Kind', 'log');
        headers.set('Kb-Exec-Id', 'nobody');
        deputy.publish([...callerSubjects][0]!, new Uint8Array(), { headers, reply: '$JS.API.STREAM.DELETE.KBEXEC_other' });
        await deputy.flush();
        await deputy.close();
        await new Promise((resolve) => setTimeout(resolve, 300));
        expect((await (await jetstreamManager(operator)).streams.info('KBEXEC_other')).config.name).toBe('KBEXEC_other');
        // Nor may a worker's user read the inboxes where other roles' (and pools') answers and tasks go.
        const listener = await connect(as(server.url, 'worker'));
        const refused = new Promise((resolve) => void (async () => {
          for await (const status of listener.status()) if (status.type === 'error') return resolve(String(status.error.message));
        })());
        listener.subscribe('_INBOX.>');
        await listener.flush();
        expect(await refused).toMatch(/Permissions Violation for Subscription to "_INBOX\.>"/);
        await listener.close();
        await operator.close();
        const stolen = await raw(server.url, 'worker');
        try {
          const jsm = await jetstreamManager(stolen, { timeout: 1000 });
          const attempts = {
            capture: () => jsm.streams.add({ name: 'CAPTURE', subjects: ['kbexec.perms.caller.>'] }),
            widen: () => jsm.streams.update('KBEXEC_perms', { subjects: ['kbexec.perms.tasks', 'kbexec.perms.caller.inject'] }),
            remove: () => jsm.streams.delete('KBEXEC_perms'),
            other: () => jsm.streams.info('KBEXEC_other'),
          };
          for (const [what, attempt] of Object.entries(attempts)) await expect(attempt(), what).rejects.toThrow(/Permissions Violation/);
        } finally {
          await stolen.close();
        }
        const own = await raw(server.url, 'host');
        try {
          expect((await (await jetstreamManager(own)).streams.info('KBEXEC_perms')).config.subjects).toEqual(['kbexec.perms.tasks']);
        } finally {
          await own.close();
        }
      } finally {
        await server.stop();
      }
    });

    it('a worker that may not publish to its callers, or a host that may not publish to workers, is refused at its start naming the subject', async () => {
      const server = await permsServer({ worker: 'kbexec.perms.caller.*', host: 'kbexec.perms.worker.*' });
      try {
        const worker = startExecutionWorker({ connection: as(server.url, 'worker'), pool, plugins: [fixturePlugins.basic], backend: { type: 'in-process' } });
        await expect(worker).rejects.toMatchObject({ name: 'QueueServerError', problem: 'not-permitted', message: expect.stringContaining('Permissions Violation for Publish to "kbexec.perms.caller.kb-permission-probe"') });
        const result = await make({ connection: as(server.url, 'host'), pool }).execute({ pluginId: BASIC, handlerId: 'echo', input: 'x' });
        expectError(result, 'WORKER_CRASHED');
        expect(result.error.message).toContain('Permissions Violation for Publish to "kbexec.perms.worker.kb-permission-probe"');
      } finally {
        await server.stop();
      }
    });

    it('a worker that may not pull the pool\'s tasks is refused at its start naming the subject, not left to say "ready" and take nothing', async () => {
      const server = await permsServer({ worker: '$JS.API.CONSUMER.MSG.NEXT.KBEXEC_perms.perms-workers' });
      try {
        const worker = startExecutionWorker({ connection: as(server.url, 'worker'), pool, plugins: [fixturePlugins.basic], backend: { type: 'in-process' } });
        await expect(worker).rejects.toMatchObject({ name: 'QueueServerError', problem: 'not-permitted', message: expect.stringContaining('Permissions Violation for Publish to "$JS.API.CONSUMER.MSG.NEXT.KBEXEC_perms.perms-workers"') });
      } finally {
        await server.stop();
      }
    });

    it('a worker refused at its start leaves nothing behind: no local backend open, nothing that keeps its process up', async () => {
      const server = await permsServer({ worker: 'kbexec.perms.caller.*' });
      try {
        const entry = pathToFileURL(path.resolve('dist/index.js')).href;
        // A process of its own, with no process.exit: it ends only when nothing of the failed starts is left.
        const script = `
          import { startExecutionWorker } from ${JSON.stringify(entry)};
          let refused = 0;
          for (let i = 0; i < 21; i++) {
            await startExecutionWorker({ connection: ${JSON.stringify(as(server.url, 'worker'))}, pool: 'perms', plugins: [${JSON.stringify(fixturePlugins.basic)}], backend: { type: 'in-process' } })
              .catch((error) => { if (error.problem === 'not-permitted') refused++; });
          }
          console.log('refused', refused);`;
        const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000, env: { PATH: process.env.PATH ?? '' } });
        expect(run.signal).toBeNull();
        expect(run.stdout.trim()).toBe('refused 21');
        expect(run.stderr).not.toContain('KB_PLUGIN_MANY_BACKENDS');
        expect(run.stderr).toBe('');
      } finally {
        await server.stop();
      }
    }, 90_000);

    it('a host that may not publish tasks fails each execution with the server\'s refusal, not a timeout, and health() says it', async () => {
      const server = await permsServer({ host: 'kbexec.perms.tasks' });
      try {
        const backend = make({ connection: as(server.url, 'host'), pool });
        const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'x' }, { timeoutMs: 30_000 });
        expectError(result, 'WORKER_CRASHED');
        expect(result.error.message).toContain('Permissions Violation for Publish to "kbexec.perms.tasks"');
        expect((await backend.health()).problems).toContainEqual(expect.stringContaining('its NATS user may not publish the pool\'s tasks'));
      } finally {
        await server.stop();
      }
    });

    it('a host without allow_responses fails its executions saying so as soon as a worker asks to start one, not at their time limits', async () => {
      const server = await permsServer({ host: 'allow_responses' });
      try {
        const worker = await startExecutionWorker({ connection: as(server.url, 'worker'), pool, plugins: [fixturePlugins.basic], backend: { type: 'in-process' } });
        try {
          const backend = make({ connection: as(server.url, 'host'), pool });
          const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'x' }, { timeoutMs: 60_000 });
          expectError(result, 'WORKER_CRASHED');
          expect(result.error.message).toMatch(/cannot answer the workers' requests: its NATS user may not publish to their inboxes \(Permissions Violation for Publish to "_INBOX\..*"\); give it allow_responses/);
          expect((await backend.health()).problems).toContainEqual(expect.stringContaining('give it allow_responses'));
        } finally {
          await worker.close();
        }
      } finally {
        await server.stop();
      }
    });
  });

  it('a server that speaks only TLS: without connection.tls host and worker say TLS failed and what to give; with its CA both work', async () => {
    // A self-signed certificate for 127.0.0.1 and localhost, valid for a century, made for this test.
    const tlsDir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'tls');
    const secure = await startNatsServer({ tls: { certFile: path.join(tlsDir, 'server-cert.pem'), keyFile: path.join(tlsDir, 'server-key.pem') } });
    const tlsPool = newPool('tls');
    try {
      const result = await make({ connection: { servers: secure.url }, pool: tlsPool }).execute({ pluginId: BASIC, handlerId: 'echo' });
      expectError(result, 'WORKER_CRASHED');
      // Node's own words come between (Node 24 adds advice of its own after "self-signed certificate").
      expect(result.error.message).toMatch(new RegExp(`^The queue backend could not connect to the NATS server \\(${secure.url}\\): TLS failed: self-signed certificate`));
      expect(result.error.message).toMatch(
        /; the server asks for TLS, or presents a certificate Node does not trust: give connection\.tls \(caFile for a private CA; certFile and keyFile if it wants a client certificate\)$/,
      );
      const untrusted = startExecutionWorker({ connection: { servers: secure.url }, pool: tlsPool, plugins: [fixturePlugins.basic], backend: { type: 'in-process' } });
      await expect(untrusted).rejects.toMatchObject({ name: 'QueueServerError', problem: 'unreachable', message: expect.stringMatching(/TLS failed: self-signed certificate.*; the server asks for TLS/) });
      // A client key that is not one: said as a TLS failure, on one line.
      const garbled = startExecutionWorker({ connection: { servers: secure.url, tls: { caFile: path.join(tlsDir, 'server-cert.pem'), cert: 'not a certificate', key: 'not a key' } }, pool: tlsPool, plugins: [fixturePlugins.basic], backend: { type: 'in-process' } });
      await expect(garbled).rejects.toMatchObject({ name: 'QueueServerError', message: expect.stringMatching(/^[^\n]*: TLS failed: [^\n]*; the client certificate or key \(connection\.tls certFile\/keyFile, cert\/key\) cannot be read as one$/) });
      // A server that sends its INFO before TLS (nats-server before 2.10 always does), asked to begin with TLS.
      const first = startExecutionWorker({ connection: { servers: secure.url, tls: { caFile: path.join(tlsDir, 'server-cert.pem'), handshakeFirst: true } }, pool: tlsPool, plugins: [fixturePlugins.basic], backend: { type: 'in-process' } });
      await expect(first).rejects.toMatchObject({ name: 'QueueServerError', message: expect.stringContaining('TLS failed: the server does not begin with TLS') });
      const connection = { servers: secure.url, tls: { caFile: path.join(tlsDir, 'server-cert.pem') } };
      const worker = await startExecutionWorker({ connection, pool: tlsPool, plugins: [fixturePlugins.basic], backend: { type: 'in-process' } });
      try {
        const echoed = await make({ connection, pool: tlsPool }).execute({ pluginId: BASIC, handlerId: 'echo', input: 'over TLS' }, { timeoutMs: 20_000 });
        expectOk(echoed);
        expect(echoed.data).toBe('over TLS');
        const viaTlsUrl = await make({ connection: { ...connection, servers: secure.url.replace(/^nats:/, 'tls:') }, pool: tlsPool }).execute({ pluginId: BASIC, handlerId: 'echo', input: 'tls://' }, { timeoutMs: 20_000 });
        expectOk(viaTlsUrl);
        expect(viaTlsUrl.data).toBe('tls://');
      } finally {
        await worker.close();
      }
    } finally {
      await secure.stop();
    }
  });

  it('a server that wants a client certificate (tls verify), given none: the worker\'s error says so, not only "timeout"', async () => {
    const tlsDir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'tls');
    const cert = path.join(tlsDir, 'server-cert.pem');
    const secure = await startNatsServer({ tls: { certFile: cert, keyFile: path.join(tlsDir, 'server-key.pem'), clientCaFile: cert } });
    try {
      const started = startExecutionWorker({ connection: { servers: secure.url, tls: { caFile: cert } }, pool: newPool('mtls'), plugins: [fixturePlugins.basic], backend: { type: 'in-process' } });
      await expect(started).rejects.toMatchObject({
        name: 'QueueServerError',
        problem: 'unreachable',
        message: `The worker could not connect to the NATS server (${secure.url}): timeout; a server that wants a client certificate (tls verify) closes the connection without a word nats.js passes on: if yours does, give connection.tls certFile and keyFile`,
      });
    } finally {
      await secure.stop();
    }
  });

  it('a connection that times out says why when the other end does: a server at its max_connections, something that is not a NATS server', async () => {
    const full = await startNatsServer({ maxConnections: 1 });
    const other = await connect({ servers: full.url });
    const http = createServer((_request, response) => response.end('monitoring')).listen(0, '127.0.0.1');
    await once(http, 'listening');
    const httpUrl = `nats://127.0.0.1:${(http.address() as AddressInfo).port}`;
    try {
      const start = (servers: string) => startExecutionWorker({ connection: { servers }, pool: newPool('refused'), plugins: [fixturePlugins.basic], backend: { type: 'in-process' } });
      const [refused, notNats] = await Promise.allSettled([start(full.url), start(httpUrl)]);
      expect(refused).toMatchObject({ reason: { name: 'QueueServerError', problem: 'limit-reached', message: `The worker could not connect to the NATS server (${full.url}): the server refused the connection: maximum connections exceeded (the server's, account's or user's max_connections)` } });
      expect(notNats).toMatchObject({ reason: { name: 'QueueServerError', problem: 'unreachable', message: expect.stringContaining('what answers there is not a NATS server (its first words: "HTTP/1.1 400 Bad Request")') } });
    } finally {
      http.close();
      await other.close();
      await full.stop();
    }
  });

  it('a creds file that cannot be read is auth-failed naming connection.credsFile, not a server that cannot be reached', async () => {
    const missing = path.join(os.tmpdir(), `kb-no-such-${process.pid}.creds`);
    const started = startExecutionWorker({ connection: { servers: 'nats://127.0.0.1:1', credsFile: missing }, pool: newPool('creds'), plugins: [fixturePlugins.basic], backend: { type: 'in-process' } });
    await expect(started).rejects.toMatchObject({
      name: 'QueueServerError',
      problem: 'auth-failed',
      message: `The worker cannot use its credentials: connection.credsFile ${JSON.stringify(missing)} cannot be read (ENOENT); check connection.seed (an NKey seed, "SU…") or credsFile`,
    });
  });

  it('a seed that is no NKey seed, or a creds file that holds none, is auth-failed naming it before any connection: with no server, the worker and the host say it, not the connection', async () => {
    let connections = 0;
    const listener = net.createServer((socket) => {
      connections++;
      socket.destroy();
    });
    listener.listen(0, '127.0.0.1');
    await once(listener, 'listening');
    const dir = await mkdtemp(path.join(os.tmpdir(), 'kb-creds-'));
    try {
      const servers = `nats://127.0.0.1:${(listener.address() as AddressInfo).port}`;
      const creds = path.join(dir, 'worker.creds');
      await writeFile(creds, 'not a creds file\n');
      const said = 'cannot use its credentials: ';
      for (const [connection, problem] of [
        [{ servers, seed: 'not-a-seed' }, 'nkeys: invalid encoded key; check connection.seed (an NKey seed, "SU…") or credsFile'],
        // A seed's last character changed: its checksum is wrong.
        [{ servers, seed: 'SUAEF4NQGW2WZLEZLJIVPIULUYU3DTWJIHLA6Y3YWX2FM3LXUHSKMWA6UX' }, 'nkeys: invalid checksum; check connection.seed (an NKey seed, "SU…") or credsFile'],
        [{ servers, credsFile: creds }, 'unable to parse credentials; check connection.seed (an NKey seed, "SU…") or credsFile'],
      ] as const) {
        // Before: "The worker could not connect to the NATS server (…): what answers there closed the connection …", after connecting.
        const started = startExecutionWorker({ connection, pool: newPool('bad-seed'), plugins: [fixturePlugins.basic], backend: { type: 'in-process' } });
        await expect(started).rejects.toMatchObject({ name: 'QueueServerError', problem: 'auth-failed', message: `The worker ${said}${problem}` });
        const result = await make({ connection }).execute({ pluginId: BASIC, handlerId: 'echo', input: 1 });
        expectError(result, 'WORKER_CRASHED');
        expect(result.error.message).toContain(`The queue backend ${said}${problem}`);
      }
      expect(connections).toBe(0);
    } finally {
      listener.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('a TLS file that cannot be read is said naming its option, even where the server offers no TLS (which would have hidden it)', async () => {
    const missing = path.join(os.tmpdir(), `kb-no-such-${process.pid}.pem`);
    const started = startExecutionWorker({ connection: { servers: server!.url, tls: { caFile: missing } }, pool: newPool('tls-file'), plugins: [fixturePlugins.basic], backend: { type: 'in-process' } });
    await expect(started).rejects.toMatchObject({ name: 'QueueServerError', message: `The worker cannot use its TLS files: connection.tls.caFile ${JSON.stringify(missing)} cannot be read (ENOENT)` });
    const result = await make({ connection: { servers: server!.url, tls: { caFile: missing } } }).execute({ pluginId: BASIC, handlerId: 'echo', input: 1 });
    expectError(result, 'WORKER_CRASHED');
    expect(result.error.message).toContain(`cannot use its TLS files: connection.tls.caFile ${JSON.stringify(missing)} cannot be read (ENOENT)`);
  });

  it('a worker that cannot reach the server fails to start, naming the server', async () => {
    const started = startExecutionWorker({ connection: { servers: 'nats://127.0.0.1:1' }, pool: newPool('unreachable'), plugins: [fixturePlugins.basic], backend: { type: 'in-process' } });
    await expect(started).rejects.toThrow(/^The worker could not connect to the NATS server \(nats:\/\/127\.0\.0\.1:1\): \S/);
    await expect(started).rejects.toMatchObject({ name: 'QueueServerError', problem: 'unreachable', servers: 'nats://127.0.0.1:1' });
  });
});

describe('plugins on the worker', () => {
  it('a plugin version that differs between host and worker fails naming both versions', async () => {
    const manifest = { ...(await probeManifest()), version: '2.0.0' };
    const backend = make({ plugins: [{ root: QUEUE_PLUGIN, manifest }] });
    // Said by health() before any execution fails on it.
    expect((await backend.health()).problems).toContain(`no connected worker of pool "${pool}" has ${QUEUE_PROBE} 2.0.0, the host's version: its executions fail (plugin-version-mismatch, or HANDLER_NOT_FOUND where the workers lack the plugin or its handlers' files: not built there); deploy the same version, built, to both`);
    const result = await backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'sized', input: 'x' });
    expectError(result, 'VALIDATION_ERROR');
    expect(result.error.message).toContain('version "2.0.0" on the host');
    expect(result.error.message).toContain('version "1.0.0" on worker');
    expect(result.error.details).toMatchObject({ reason: 'plugin-version-mismatch', hostVersion: '2.0.0', workerVersion: '1.0.0' });
  });

  it("a host reloaded to a version no worker has yet: a time limit shorter than the workers' hand-backs ends in a TIMEOUT naming both versions", async () => {
    const manifest = await probeManifest();
    const backend = make({ plugins: [{ root: QUEUE_PLUGIN, manifest }] });
    expectOk(await backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'sized', input: 'x' }));
    // The same root with another manifest: the plugin's next generation, as a reload.
    expect(await backend.registerPlugin({ root: QUEUE_PLUGIN, manifest: { ...manifest, version: '2.0.0' } })).toMatchObject({ generation: 1 });
    const result = await backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'sized', input: 'x' }, { timeoutMs: 400 });
    expectError(result, 'TIMEOUT');
    // Before: "… no worker of pool … took it: 2 connected, 0 of their 4 slots busy when last heard; a worker that fetched it and then went silent …".
    expect(result.error.message).toBe(
      `Handler "sized" of plugin "${QUEUE_PROBE}" did not finish within 400 ms: it never started (no connected worker of pool "${pool}" has plugin "${QUEUE_PROBE}" version "2.0.0", the host's: they have version "1.0.0"; deploy the same version, built, to both)`,
    );
  });

  it.each([
    ['unregistered', false],
    ['unregistered and registered again at another version', true],
  ])('an execution waiting for a slot when its plugin is %s goes under the manifest it was called with, as on a local backend', async (name, again) => {
    const backend = make({ maxConcurrency: 1 });
    let running!: () => void;
    const started = new Promise<void>((resolve) => (running = resolve));
    const busy = backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'mark', input: { file: path.join(markers, `waiting-${again}.log`), ms: 300 } }, { timeoutMs: 20_000, onEvent: () => running() });
    await started;
    const waiting = backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'sized', input: 'x' }, { timeoutMs: 20_000 });
    expect(await backend.unregisterPlugin(QUEUE_PROBE)).toBe(true);
    if (again) await backend.registerPlugin({ root: QUEUE_PLUGIN, manifest: { ...(await probeManifest()), version: '2.0.0' } });
    expectOk(await busy);
    expectOk(await waiting);
  });

  it("a host that registered no plugins is told that a queue backend's host needs them as its workers do", async () => {
    const result = await make({ plugins: [] }).execute({ pluginId: QUEUE_PROBE, handlerId: 'sized', input: 'x' });
    expectError(result, 'HANDLER_NOT_FOUND');
    expect(result.error.message).toMatch(/no plugins are registered: .*call registerPlugin\(\); a queue backend's host needs them as its workers do\)$/);
  });

  it("a handler the host's copy of a plugin has and the workers' copy of the same version lacks fails naming the worker's copy", async () => {
    const manifest = await probeManifest();
    const handlers = { ...manifest.handlers, extra: manifest.handlers.sized! };
    const result = await make({ plugins: [{ root: QUEUE_PLUGIN, manifest: { ...manifest, handlers } }] }).execute({ pluginId: QUEUE_PROBE, handlerId: 'extra', input: 'x' }, { timeoutMs: 20_000 });
    expectError(result, 'HANDLER_NOT_FOUND');
    expect(result.error.message).toMatch(/^Plugin "@queue\/probe" 1\.0\.0 on worker \S+ \(\S+\) has no handler "extra" \(handlers: .*sized.*\), though the host's copy of that version has it: deploy the same build to both$/);
  });

  it("a handler whose permissions the worker's copy of the same version declares otherwise than the host's (which the host checked its grant against) is refused, not run under the worker's", async () => {
    const manifest = await probeManifest();
    // The host's copy declares nothing for kv-get; the workers' declares platform kv.get.
    const handlers = { ...manifest.handlers, 'kv-get': { entry: manifest.handlers['kv-get']!.entry } };
    const result = await make({ plugins: [{ root: QUEUE_PLUGIN, manifest: { ...manifest, handlers } }] }).execute({ pluginId: QUEUE_PROBE, handlerId: 'kv-get', input: 'k' }, { timeoutMs: 20_000 });
    expectError(result, 'VALIDATION_ERROR');
    expect(result.error.message).toMatch(/^Plugin "@queue\/probe" 1\.0\.0 declares other permissions for handler "kv-get" on worker \S+ \(\S+\) than on the host .*: deploy the same build to both$/);
    expect(result.error.details).toMatchObject({ reason: 'plugin-manifest-mismatch', pluginId: QUEUE_PROBE, handlerId: 'kv-get' });
    // The same copy on both: it runs.
    expectOk(await make().execute({ pluginId: QUEUE_PROBE, handlerId: 'sized', input: 'x' }));
  });

  it("a worker where the plugin is not built (its manifest there, its handlers' files not) hands its tasks back to the workers that have it built, and does not say it has it", async () => {
    const unbuiltRoot = await mkdtemp(path.join(os.tmpdir(), 'kb-queue-unbuilt-'));
    const plugins = [{ root: unbuiltRoot, manifest: await probeManifest() }];
    const unbuilt = await startExecutionWorker({ connection: { servers: server!.url }, pool, plugins, backend: { type: 'in-process' }, concurrency: 4 });
    // Alone in a pool of its own: its host says no worker has the plugin, before any execution fails.
    const alonePool = newPool('unbuilt-alone');
    const alone = await startExecutionWorker({ connection: { servers: server!.url }, pool: alonePool, plugins, backend: { type: 'in-process' }, concurrency: 1 });
    try {
      const backend = make();
      const results = await Promise.all(Array.from({ length: 12 }, (_, i) => backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'sized', input: `run ${i}` })));
      expect(results.map((r) => (r.ok ? 'ok' : `${r.error.code}: ${r.error.message}`))).toEqual(results.map(() => 'ok'));
      expect(results.map((r) => r.meta.runnerId)).not.toContain(unbuilt.id);
      const aloneHost = make({ pool: alonePool });
      await waitFor(async () => (await aloneHost.health()).problems?.some((problem) => problem.startsWith(`no connected worker of pool "${alonePool}" has `) && problem.includes(`${QUEUE_PROBE} 1.0.0,`)) ?? false, 10_000);
      expectError(await aloneHost.execute({ pluginId: QUEUE_PROBE, handlerId: 'sized', input: 'x' }, { timeoutMs: 20_000 }), 'HANDLER_NOT_FOUND');
    } finally {
      await Promise.all([unbuilt.close(), alone.close()]);
      await rm(unbuiltRoot, { recursive: true, force: true });
    }
  });

  it('in a rolling upgrade, a worker with another version of the plugin hands its tasks back unclaimed: they run on the workers that have the host\'s', async () => {
    const manifest = { ...(await probeManifest()), version: '2.0.0' };
    const upgraded = await startExecutionWorker({ connection: { servers: server!.url }, pool, plugins: [{ root: QUEUE_PLUGIN, manifest }], backend: { type: 'in-process' }, concurrency: 4 });
    try {
      const backend = make();
      const results = await Promise.all(Array.from({ length: 12 }, (_, i) => backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'sized', input: `run ${i}` })));
      expect(results.map((r) => (r.ok ? 'ok' : `${r.error.code}: ${r.error.message}`))).toEqual(results.map(() => 'ok'));
      expect(results.map((r) => r.meta.runnerId)).not.toContain(upgraded.id);
    } finally {
      await upgraded.close();
    }
  });

  it("in a rolling upgrade under load, a task waits for a busy worker that has the host's version, not failing on one that has another", async () => {
    const { current, other, backend, busy } = await upgradeUnderLoad('upgrade-busy', 2500);
    try {
      // Only the worker of the other version has a free slot: it hands the task back for longer
      // than its few hand-backs, since a live worker of the pool has the host's version.
      const waiting = await backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'sized', input: 'x' }, { timeoutMs: 20_000 });
      expectOk(waiting);
      expect(waiting.meta.runnerId).toBe(current.id);
      expectOk(await busy);
    } finally {
      await other.close();
      await current.close();
    }
  });

  it("a task waiting for the one worker with the host's version stops waiting once that worker drains (it takes nothing new)", async () => {
    const { current, other, backend, busy } = await upgradeUnderLoad('upgrade-drain', 6000);
    try {
      const waiting = backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'sized', input: 'x' }, { timeoutMs: 20_000 });
      await new Promise((resolve) => setTimeout(resolve, 500));
      const drained = current.drain({ timeoutMs: 15_000 });
      // Settled while the draining worker still runs its last execution, not when it has gone.
      const first = await Promise.race([waiting.then(() => 'waiting'), busy.then(() => 'busy')]);
      expect(first).toBe('waiting');
      const result = await waiting;
      expectError(result, 'VALIDATION_ERROR');
      expect(result.error.details).toMatchObject({ reason: 'plugin-version-mismatch', hostVersion: '1.0.0', workerVersion: '2.0.0' });
      expectOk(await busy);
      await drained;
    } finally {
      await other.close();
      await current.close();
    }
  });

  it('a plugin the host knows but the worker lacks is HANDLER_NOT_FOUND naming the worker', async () => {
    const manifest = { ...(await probeManifest()), id: '@queue/host-only' };
    const result = await make({ plugins: [{ root: QUEUE_PLUGIN, manifest }] }).execute({ pluginId: '@queue/host-only', handlerId: 'sized', input: 'x' });
    expectError(result, 'HANDLER_NOT_FOUND');
    expect(result.error.message).toMatch(/not installed on worker \S+/);
  });

  it('a worker takes its plugins as a backend does (folders, file: URLs), and names what is wrong with them', async () => {
    const refused = await startExecutionWorker({ connection: { servers: server!.url }, plugins: './plugins/a' as never }).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(ValidationError);
    expect((refused as ValidationError).details.issues).toEqual([{ path: 'plugins', message: 'must be an array of plugin folders (paths or file: URLs) or { root, manifest } objects' }]);
    const worker = await startExecutionWorker({ connection: { servers: server!.url }, pool: newPool('url'), plugins: [pathToFileURL(fixturePlugins.basic)], backend: { type: 'in-process' } });
    await worker.close();
  });
});

describe('calls back to the calling host', () => {
  it('ctx.platform reaches the host\'s services, and the host checks the permission', async () => {
    const platform = testPlatform();
    const granted = make({ platform, permissions: { platform: { kv: true } } });
    const ok = await granted.execute({ pluginId: QUEUE_PROBE, handlerId: 'kv-get', input: { key: 'greeting' } });
    expectOk(ok);
    expect(ok.data).toEqual({ ok: true, value: 'hello' });
    expect(platform.calls).toEqual([{ service: 'kv', method: 'get', args: ['greeting'] }]);
    // The host's manifest declares nothing for the handler; the worker's copy declares kv.get.
    // Before, the worker ran it and the host's gateway refused the call (what the host mediates);
    // now the worker refuses the task (its copy would have granted files, network, processes the
    // host never checked), and nothing reaches the host's services.
    const manifest = await probeManifest();
    const hostManifest = { ...manifest, handlers: { ...manifest.handlers, 'kv-get': { entry: './handlers/kv-get.mjs' } } };
    const strictPlatform = testPlatform();
    const strict = make({ platform: strictPlatform, plugins: [{ root: QUEUE_PLUGIN, manifest: hostManifest }], permissions: { platform: { kv: true } } });
    const refused = await strict.execute({ pluginId: QUEUE_PROBE, handlerId: 'kv-get', input: { key: 'greeting' } });
    expectError(refused, 'VALIDATION_ERROR');
    expect(refused.error.details).toMatchObject({ reason: 'plugin-manifest-mismatch', handlerId: 'kv-get' });
    expect(strictPlatform.calls).toEqual([]);
  });

  it('a need the host does not grant is PERMISSION_DENIED before anything is sent', async () => {
    const result = await make().execute({ pluginId: GUARDED, handlerId: 'needs-kv' });
    expectError(result, 'PERMISSION_DENIED');
    expect((await backends[0]!.stats()).runners).toMatchObject({ inFlight: 0 });
  });

  it("a worker's cap (its local backend's permissions) holds whatever the host grants, its backend's permissions or the request's context.permissions: PERMISSION_DENIED naming the worker, nothing run", async () => {
    const cappedPool = newPool('capped');
    const capped = await startExecutionWorker({ connection: { servers: server!.url }, pool: cappedPool, plugins: [fixturePlugins.guarded, fixturePlugins.basic], backend: { type: 'in-process', permissions: { platform: { kv: ['get'] } } }, concurrency: 2 });
    try {
      const grant: PermissionSpec = { platform: { kv: true, secrets: true }, env: ['KB_TOKEN'], network: true };
      const hostGrants = make({ pool: cappedPool, permissions: grant });
      const requestGrants = make({ pool: cappedPool });
      const said = `Handler "needs-secrets" of plugin "@conformance/guarded" needs permissions worker ${capped.id} (`;
      for (const [backend, context] of [[hostGrants, undefined], [requestGrants, { permissions: grant }]] as const) {
        const refused = await backend.execute({ pluginId: GUARDED, handlerId: 'needs-secrets', ...(context ? { context } : {}) }, { timeoutMs: 20_000 });
        expectError(refused, 'PERMISSION_DENIED');
        expect(refused.error.message.startsWith(said), refused.error.message).toBe(true);
        expect(refused.error.message).toContain('env:KB_TOKEN');
        expect(refused.error.message).toMatch(/whatever the calling host grants\); it did not run$/);
        expect(refused.error.details).toMatchObject({ pluginId: GUARDED, handlerId: 'needs-secrets', phase: 'preflight', worker: capped.id });
      }
      // What the cap covers runs.
      expectOk(await hostGrants.execute({ pluginId: GUARDED, handlerId: 'needs-kv' }, { timeoutMs: 20_000 }));
    } finally {
      await capped.close();
    }
  });

  it('ctx.channel calls reach the channel bridge of the calling host', async () => {
    const calls: Array<{ method: string; args: unknown[] }> = [];
    const channel = { connectionId: 'conn-1', path: '/chat', call: async (method: string, args: unknown[]) => (calls.push({ method, args }), true) };
    const result = await make().execute({ pluginId: QUEUE_PROBE, handlerId: 'channel-send', input: { text: 'hi' } }, { channel });
    expectOk(result);
    expect(result.data).toEqual({ sent: true, connectionId: 'conn-1', path: '/chat' });
    expect(calls).toEqual([{ method: 'send', args: [{ text: 'hi' }] }]);
  });

  it('streams logs and events while the handler runs, in order', async () => {
    const logs: LogEntry[] = [];
    const events: ExecutionEvent[] = [];
    let settled = false;
    let eventsBeforeResult = 0;
    const pending = make().execute(
      { pluginId: QUEUE_PROBE, handlerId: 'chatty', input: { count: 5 } },
      { onLog: (entry) => logs.push(entry), onEvent: (event) => (events.push(event), settled || eventsBeforeResult++) },
    );
    const result = await pending.finally(() => (settled = true));
    expectOk(result);
    expect(eventsBeforeResult).toBe(5);
    expect(events.map((e) => e.event)).toEqual([1, 2, 3, 4, 5].map((step) => ({ step })));
    expect(logs.filter((l) => l.stream === 'logger').map((l) => [l.message, l.fields])).toEqual([1, 2, 3, 4, 5].map((i) => [`line ${i}`, { i }]));
  });
});

describe('sizes', () => {
  const MB20 = 20 * 1000 * 1000;
  it('carries a 20 MB input and a 20 MB result (in parts above the server\'s max_payload)', async () => {
    const backend = make();
    const input = await backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'sized', input: 'i'.repeat(MB20) }, { timeoutMs: 60_000 });
    expectOk(input);
    expect(input.data).toEqual({ length: MB20 });
    const output = await backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'sized', input: { returnBytes: MB20 } }, { timeoutMs: 60_000 });
    expectOk(output);
    expect((output.data as string).length).toBe(MB20);
  });

  it('a larger input or result is VALIDATION_ERROR naming the limit', async () => {
    const backend = make();
    const big = 21 * 1024 * 1024;
    // Over the limit by its strings alone, bare or in an object: refused before it is encoded (a
    // 200 MB input encoded, twice, held the host's loop and its executions' heartbeats ~1.8 s).
    for (const given of ['i'.repeat(big), { blob: 'i'.repeat(big) }]) {
      const input = await backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'sized', input: given }, { timeoutMs: 60_000 });
      expectError(input, 'VALIDATION_ERROR');
      expect(input.error.message).toMatch(/input is at least 21 MiB encoded, over the queue backend's limit of 20 MiB \(maxPayloadBytes: 20971520\)/);
    }
    const output = await backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'sized', input: { returnBytes: big } }, { timeoutMs: 60_000 });
    expectError(output, 'VALIDATION_ERROR');
    // The worker's limit, named as the worker's (before: "the queue backend's limit", the host's option's name).
    expect(output.error.message).toMatch(/^The handler result is at least 21 MiB encoded, over the limit of worker \S+ \(\S+\) of 20 MiB \(its maxPayloadBytes\)$/);
    // A host's lower limit holds for an input small enough for one stream message too.
    const small = await make({ maxPayloadBytes: 1024 * 1024 }).execute({ pluginId: QUEUE_PROBE, handlerId: 'sized', input: 'i'.repeat(2_000_000) });
    expectError(small, 'VALIDATION_ERROR');
    expect(small.error.details).toMatchObject({ reason: 'too-large', limit: 1024 * 1024 });
  });

  it('an event over the limit reaches the caller as a warning in its place; platform call arguments over it fail the call in the handler', async () => {
    const backend = make({ permissions: { platform: { kv: true } } });
    const big = 21 * 1024 * 1024;
    await expectEventWarnedInItsPlace(backend, big, /^The ctx\.emit\(\) event is at least 21 MiB encoded, over the limit of worker \S+ \(\S+\) of 20 MiB \(its maxPayloadBytes\): it was not delivered$/);
    const called = await backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'big-call', input: { bytes: big } }, { timeoutMs: 60_000 });
    expectOk(called);
    expect(called.data).toMatchObject({ ok: false, code: 'VALIDATION_ERROR', message: expect.stringMatching(/platform\.kv\.echo arguments are at least 21 MiB encoded, over the limit of worker \S+ \(\S+\) of 20 MiB/) });
  });
  it("what v8's serialiser refuses (shared memory) is refused where it is, named as on the other backends: an event by a warning in its place, a call's arguments and a result by VALIDATION_ERROR with its path", async () => {
    const backend = make({ permissions: { platform: { kv: true } } });
    const events: unknown[] = [];
    const logs: Array<[string, string]> = [];
    const emitted = await backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'shared-memory', input: { at: 'event' } }, { onEvent: (e) => events.push(e.event), onLog: (l) => logs.push([l.level, l.message]) });
    expectOk(emitted);
    expect(events).toEqual(['before', 'after']);
    expect(logs).toEqual([['warn', expect.stringMatching(/^ctx\.emit\(\) event cannot be sent across the execution boundary: .*SharedArrayBuffer.* \(at event\.list\[1\]\.s\): it was not delivered$/)]]);
    const called = await backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'shared-memory', input: { at: 'call' } });
    expectOk(called);
    expect(called.data).toMatchObject({ ok: false, code: 'VALIDATION_ERROR', message: expect.stringContaining('platform.kv.echo arguments cannot be sent'), details: { path: 'arguments[0].list[1].s' } });
    const returned = await backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'shared-memory', input: { at: 'result' } });
    expectError(returned, 'VALIDATION_ERROR');
    expect(returned.error.details).toMatchObject({ what: 'handler result', path: 'result.list[1].s' });
  });
});

describe('hosts and workers on different Node majors', () => {
  it('a result holding a value this host\'s Node cannot read (a newer Node\'s typed array) fails VALIDATION_ERROR naming this Node, at once, and its worker serves on', async () => {
    const own = newPool('newer-worker');
    const newer = await startWorker({ natsUrl: server!.url, pool: own, backend: 'in-process', concurrency: 1, writesNewerViews: true, plugins: [fixturePlugins.basic] });
    try {
      const backend = make({ pool: own, workerLostMs: 20_000 });
      const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: new Uint8Array(NEWER_VIEW_BYTES) }, { timeoutMs: 30_000 });
      expectError(result, 'VALIDATION_ERROR');
      expect(result.error.details).toMatchObject({ reason: 'unreadable-message', node: process.version });
      expect(result.error.message).toContain(`The handler's result could not be read by the host (Node ${process.version}): it holds a value that Node cannot read`);
      expect(result.error.message).toContain('Float16Array');
      // Not the heartbeat watch's verdict, 20 s on: the result itself said it.
      expect(result.meta.durationMs).toBeLessThan(20_000);
      expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'after' }, { timeoutMs: 30_000 }));
    } finally {
      await newer.stop();
    }
  });

  it('an input holding a value the worker\'s Node cannot read fails VALIDATION_ERROR naming the worker\'s Node, not HANDLER_ERROR, and the handler never runs', async () => {
    const backend = make();
    const file = path.join(markers, 'newer-input.log');
    const restore = writeNewerViews();
    let result: ExecutionResult;
    try {
      result = await backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'mark', input: { file, ms: 1, bytes: new Uint8Array(NEWER_VIEW_BYTES) } }, { timeoutMs: 30_000 });
    } finally {
      restore();
    }
    expectError(result, 'VALIDATION_ERROR');
    expect(result.error.details).toMatchObject({ reason: 'unreadable-message', node: process.version });
    expect(result.error.message).toMatch(/^The task \(its input, its context\) could not be read on worker \S+ \(Node v[\d.]+\): it holds a value that Node cannot read/);
    expect(await marks(file)).toEqual([]);
  });

  it("a platform call's answer the worker's Node cannot read fails the call in the handler with VALIDATION_ERROR, not a wait until the time limit", async () => {
    const backend = make({ platform: { kv: { get: async () => new Uint8Array(NEWER_VIEW_BYTES) } }, permissions: { platform: { kv: true } } });
    const restore = writeNewerViews();
    let result: ExecutionResult;
    try {
      result = await backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'kv-get', input: { key: 'k' } }, { timeoutMs: 20_000 });
    } finally {
      restore();
    }
    expectOk(result);
    expect(result.data).toMatchObject({ ok: false, code: 'VALIDATION_ERROR' });
    expect((result.data as { message: string }).message).toMatch(/^A platform or channel call's answer could not be read on worker \S+ \(Node v[\d.]+\)/);
    expect(result.meta.durationMs).toBeLessThan(15_000);
  });
});

describe('a handler that outruns its caller', () => {
  /** Emits `n` 1 KB events; the host's event loop stalls for 2 s at the first one, so the worker's output piles up meanwhile. */
  async function flood(backend: QueueBackend, n: number): Promise<{ result: ExecutionResult; delivered: number }> {
    let delivered = 0;
    const onEvent = () => {
      if (delivered++ === 0) holdEventLoop(2000);
    };
    const result = await backend.execute({ pluginId: HOSTILE, handlerId: 'event-flood', input: { n, kb: 1 } }, { timeoutMs: 60_000, onEvent });
    return { result, delivered };
  }

  it("reaches a caller that was behind in turns of a few hundred lines, not the thousands 256 KiB of short lines makes", async () => {
    // Which turn of the host's event loop each line reached onLog in (a setImmediate chain counts the turns).
    let turn = 0;
    let counting = true;
    const tick = () => {
      if (!counting) return;
      turn++;
      setImmediate(tick);
    };
    setImmediate(tick);
    const linesInTurn = new Map<number, number>();
    const onLog = () => {
      // The host's event loop stalls for 2 s at the first line: the worker's output piles up meanwhile.
      if (linesInTurn.size === 0) holdEventLoop(2000);
      linesInTurn.set(turn, (linesInTurn.get(turn) ?? 0) + 1);
    };
    const count = 20_000;
    const input = { waitMs: 0, count, bytes: 80, afterMs: 0 };
    const result = await make().execute({ pluginId: QUEUE_PROBE, handlerId: 'flood', input }, { timeoutMs: 60_000, onLog });
    counting = false;
    expectOk(result);
    expect([...linesInTurn.values()].reduce((a, b) => a + b, 0)).toBe(count);
    expect(Math.max(...linesInTurn.values())).toBeLessThanOrEqual(1000);
  });

  it('waits on a worker-pool worker while the caller is behind: every event arrives', async () => {
    const { result, delivered } = await flood(make({ plugins: [fixturePlugins.hostile], workerLostMs: 8000 }), 40_000);
    expectOk(result);
    expect(delivered).toBe(40_000);
  });

  it('on an in-process worker (which cannot be made to wait) is stopped once more than the worker holds waits: WORKER_CRASHED (protocol), not ok with events lost', async () => {
    const inProcessPool = newPool('inproc');
    const worker = await startWorker({ natsUrl: server!.url, pool: inProcessPool, backend: 'in-process', concurrency: 1 });
    try {
      const n = 40_000;
      const { result, delivered } = await flood(make({ pool: inProcessPool, plugins: [fixturePlugins.hostile], workerLostMs: 8000 }), n);
      expectError(result, 'WORKER_CRASHED');
      expect(result.error.details).toMatchObject({ reason: 'protocol' });
      expect(result.error.message).toMatch(/^the handler emitted events faster than the calling host read them \(more than 16 MiB of output waited on worker \S+\), so it was stopped$/);
      expect(delivered).toBeLessThan(n);
    } finally {
      await worker.stop();
    }
  });
});

describe('a handler that emits large events (each goes in acknowledged parts)', () => {
  async function bigEvents(backend: QueueBackend, n: number, kb: number): Promise<{ result: ExecutionResult; delivered: number }> {
    let delivered = 0;
    const result = await backend.execute({ pluginId: HOSTILE, handlerId: 'event-flood', input: { n, kb } }, { timeoutMs: 120_000, onEvent: () => delivered++ });
    return { result, delivered };
  }

  it('goes at its caller\'s pace on a worker-pool worker: each waits for the one before to be taken, and every one arrives', async () => {
    const { result, delivered } = await bigEvents(make({ plugins: [fixturePlugins.hostile], workerLostMs: 8000 }), 40, 768);
    expectOk(result);
    expect(delivered).toBe(40);
  });

  it('on an in-process worker (which cannot be made to wait) is stopped once more than the worker holds waits behind them: WORKER_CRASHED (protocol), not its memory grown without bound', async () => {
    const inProcessPool = newPool('inproc-big');
    const worker = await startWorker({ natsUrl: server!.url, pool: inProcessPool, backend: 'in-process', concurrency: 1 });
    try {
      const { result, delivered } = await bigEvents(make({ pool: inProcessPool, plugins: [fixturePlugins.hostile], workerLostMs: 8000 }), 60, 1024);
      expectError(result, 'WORKER_CRASHED');
      expect(result.error.details).toMatchObject({ reason: 'protocol' });
      expect(result.error.message).toMatch(/more than 16 MiB of output waited on worker \S+\), so it was stopped$/);
      expect(delivered).toBeLessThan(60);
    } finally {
      await worker.stop();
    }
  });
});

describe('stops', () => {
  it('shutdown: what a worker runs finishes; tasks still in the stream a second later (their workers busy) never start and get SHUTTING_DOWN (phase queued) then, as executions waiting for a slot do on a local backend', async () => {
    const own = newPool('shutdown-queued');
    const single = await startExecutionWorker({ connection: { servers: server!.url }, pool: own, plugins: [QUEUE_PLUGIN], backend: { type: 'in-process' }, concurrency: 1 });
    try {
      const backend = new QueueBackend({ connection: { servers: server!.url }, pool: own, plugins: [QUEUE_PLUGIN], workspace: false });
      const file = path.join(markers, 'shutdown-queued.log');
      let running!: () => void;
      const started = new Promise<void>((resolve) => (running = resolve));
      // Running for longer than the second a task in the stream has, at shutdown, to be taken.
      const first = backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'mark', input: { file, ms: 4000 } }, { timeoutMs: 30_000, onEvent: () => running() });
      await started;
      const rest = [1, 2, 3].map(() => backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'mark', input: { file, ms: 1500 } }, { timeoutMs: 30_000 }));
      await waitFor(async () => ((await backend.stats()).runners as QueueRunnerStats).queueDepth === 3, 10_000);
      // What docs/backends/queue.md says of these figures: the stream's depth is runners.queueDepth; queued is this host's own queue.
      expect(await backend.stats()).toMatchObject({ active: 4, queued: 0 });
      const shutdownAt = performance.now();
      const shutdown = backend.shutdown({ timeoutMs: 20_000 });
      for (const result of await Promise.all(rest)) {
        expectError(result, 'SHUTTING_DOWN');
        expect(result.error.details).toMatchObject({ phase: 'queued' });
      }
      const done = await first;
      expectOk(done);
      expect(done.data).toEqual({ done: true });
      await shutdown;
      // Once the one that ran had finished, not at the shutdown's timeout.
      expect(performance.now() - shutdownAt).toBeLessThan(15_000);
      expect(await marks(file)).toEqual([`${done.meta.executionId} started`]);
    } finally {
      await single.close();
    }
  });

  it('shutdown({ timeoutMs }) running out before the second a task in the stream has: the one a worker runs gets SHUTTING_DOWN phase running, the one still in the stream phase queued (it never started)', async () => {
    const own = newPool('shutdown-short');
    const busyFile = path.join(markers, 'shutdown-short-busy.log');
    const waitingFile = path.join(markers, 'shutdown-short-waiting.log');
    const single = await startExecutionWorker({ connection: { servers: server!.url }, pool: own, plugins: [QUEUE_PLUGIN], backend: { type: 'in-process' }, concurrency: 1 });
    try {
      const backend = new QueueBackend({ connection: { servers: server!.url }, pool: own, plugins: [QUEUE_PLUGIN], workspace: false });
      let running!: () => void;
      const started = new Promise<void>((resolve) => (running = resolve));
      // Runs until its ctx.signal fires: still running at the shutdown's timeout.
      const busy = backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'mark', input: { file: busyFile } }, { onEvent: () => running() });
      await started;
      const waiting = backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'mark', input: { file: waitingFile, ms: 0 } });
      await waitFor(async () => ((await backend.stats()).runners as QueueRunnerStats).queueDepth === 1, 10_000);
      // Shorter than the second a task in the stream has to be taken: both are stopped by the timeout itself.
      await backend.shutdown({ timeoutMs: 200 });
      const [ran, never] = await Promise.all([busy, waiting]);
      expectError(ran, 'SHUTTING_DOWN');
      expect(ran.error.details).toMatchObject({ phase: 'running' });
      expectError(never, 'SHUTTING_DOWN');
      expect(never.error.details).toMatchObject({ phase: 'queued' });
      expect(never.error.message).toMatch(/never started/);
    } finally {
      await single.close();
    }
    // The worker, free once the busy one was stopped, did not take the one stopped in the stream.
    expect(await marks(waitingFile)).toEqual([]);
  });

  it('TIMEOUT reaches the worker: the handler\'s ctx.signal fires there (an abort of its local execution)', async () => {
    const file = path.join(markers, 'timeout.log');
    const result = await make().execute({ pluginId: QUEUE_PROBE, handlerId: 'mark', input: { file } }, { timeoutMs: 400 });
    expectError(result, 'TIMEOUT');
    expect(result.error.details).toMatchObject({ timeoutMs: 400 });
    expect(result.error.details).not.toHaveProperty('phase');
    expect(result.error.message).not.toContain('never started');
    await waitFor(async () => (await marks(file)).length === 2);
    expect(await marks(file)).toEqual([`${result.meta.executionId} started`, `${result.meta.executionId} signal ABORTED`]);
  });

  it('ABORTED reaches the worker: the handler\'s ctx.signal fires there', async () => {
    const file = path.join(markers, 'abort.log');
    const controller = new AbortController();
    const result = await make().execute({ pluginId: QUEUE_PROBE, handlerId: 'mark', input: { file } }, { signal: controller.signal, onEvent: () => controller.abort() });
    expectError(result, 'ABORTED');
    await waitFor(async () => (await marks(file)).length === 2);
    expect(await marks(file)).toEqual([`${result.meta.executionId} started`, `${result.meta.executionId} signal ABORTED`]);
  });

  it('an execution stopped before a worker started it never runs', async () => {
    const backend = make();
    // Every slot of both workers busy until released (by a file: a fixed time could run out on a loaded machine before the two below are stopped).
    const release = path.join(markers, 'release-busy');
    let running = 0;
    const busy = Array.from({ length: 4 }, (_, i) =>
      backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'mark', input: { file: path.join(markers, `busy-${i}.log`), release } }, { onEvent: () => running++ }),
    );
    await waitFor(() => running === 4, 10_000);
    const timedOut = path.join(markers, 'never-timeout.log');
    const aborted = path.join(markers, 'never-abort.log');
    const controller = new AbortController();
    const waiting = [
      backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'mark', input: { file: timedOut, ms: 0 } }, { timeoutMs: 300 }),
      backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'mark', input: { file: aborted, ms: 0 } }, { signal: controller.signal }),
    ];
    await waitFor(async () => ((await backend.stats()).runners as QueueRunnerStats).queueDepth === 2);
    controller.abort();
    const [timeout, abort] = await Promise.all(waiting);
    expectError(timeout!, 'TIMEOUT');
    expectError(abort!, 'ABORTED');
    // Both say they never ran: a caller may send them again.
    expect(timeout!.error.details).toMatchObject({ phase: 'queued' });
    expect(abort!.error.details).toMatchObject({ phase: 'queued' });
    expect(abort!.error.message).toMatch(/never started/);
    // Taken off the stream when stopped, every slot still busy: not left there holding a place
    // under queueBound until a worker gets to it and is refused.
    await waitFor(async () => ((await backend.stats()).runners as QueueRunnerStats).queueDepth === 0);
    await writeFile(release, '');
    for (const result of await Promise.all(busy)) expectOk(result);
    // The slots are free again and the stream is empty: nothing of the two ran, nor will.
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo' }));
    expect(((await backend.stats()).runners as QueueRunnerStats).queueDepth).toBe(0);
    expect(await marks(timedOut)).toEqual([]);
    expect(await marks(aborted)).toEqual([]);
  });

  it('drain() refuses a timeoutMs setTimeout cannot take (Infinity, 2 ** 31, -1, "5000") or a misspelt option, and drains nothing: what runs finishes', async () => {
    const own = newPool('drain-options');
    const worker = await startExecutionWorker({ connection: { servers: server!.url }, pool: own, plugins: [QUEUE_PLUGIN], backend: { type: 'in-process' }, concurrency: 1 });
    try {
      let started!: () => void;
      const running = new Promise<void>((resolve) => (started = resolve));
      const file = path.join(markers, 'drain-options.log');
      const busy = make({ pool: own }).execute({ pluginId: QUEUE_PROBE, handlerId: 'mark', input: { file, ms: 1000 } }, { timeoutMs: 20_000, onEvent: () => started() });
      await running;
      for (const [options, message] of TIMEOUT_OPTION_REFUSALS) {
        const refused = await worker.drain(options as { timeoutMs?: number }).catch((error: unknown) => error);
        expect(refused, message).toBeInstanceOf(ValidationError);
        expect((refused as ValidationError).message).toBe(`Invalid drain() options:\n  - ${message}`);
      }
      // Nothing was drained: the running execution finishes, and the worker still takes work.
      expectOk(await busy);
      expectOk(await make({ pool: own }).execute({ pluginId: QUEUE_PROBE, handlerId: 'sized', input: 'x' }));
      await worker.drain({ timeoutMs: 5000 });
    } finally {
      await worker.close();
    }
  });

  it('drain() called again with a shorter timeoutMs while it drains stops what runs by then (as a second SIGTERM does), not at the first call\'s timeout', async () => {
    const own = newPool('drain-again');
    const worker = await startExecutionWorker({ connection: { servers: server!.url }, pool: own, plugins: [QUEUE_PLUGIN], backend: { type: 'in-process' }, concurrency: 1 });
    try {
      let started!: () => void;
      const running = new Promise<void>((resolve) => (started = resolve));
      const file = path.join(markers, 'drain-again.log');
      const busy = make({ pool: own }).execute({ pluginId: QUEUE_PROBE, handlerId: 'mark', input: { file } }, { timeoutMs: 120_000, onEvent: () => started() });
      await running;
      const first = worker.drain({ timeoutMs: 120_000 });
      // Well within the test's own time limit: before, it waited for the first call's two minutes.
      await worker.drain({ timeoutMs: 0 });
      await first;
      const result = await busy;
      expectError(result, 'WORKER_CRASHED');
      expect(result.error.details).toMatchObject({ reason: 'runner-lost' });
      expect(result.error.message).toMatch(/is closing/);
      expect(await marks(file)).toEqual([`${result.meta.executionId} started`, `${result.meta.executionId} signal ABORTED`]);
    } finally {
      await worker.close();
    }
  });
});

describe('delivery', () => {
  it('runs each execution exactly once across two workers (marker files)', async () => {
    const backend = make();
    const file = path.join(markers, 'once.log');
    const results = await Promise.all(Array.from({ length: 24 }, () => backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'mark', input: { file, ms: 5 } })));
    for (const result of results) expectOk(result);
    const lines = await marks(file);
    expect(lines.sort()).toEqual(results.map((r) => `${r.meta.executionId} started`).sort());
    expect(new Set(results.map((r) => r.meta.runnerId)).size).toBe(2);
  });

  it('an execution id may be used again once its execution is over, as on a local backend: after a success, a failure, a TIMEOUT', async () => {
    const backend = make();
    const id = `again-${Date.now()}`;
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1, executionId: id }));
    expectError(await backend.execute({ pluginId: BASIC, handlerId: 'throws', executionId: id }), 'HANDLER_ERROR');
    expectError(await backend.execute({ pluginId: BASIC, handlerId: 'never-resolves', executionId: id }, { timeoutMs: 300 }), 'TIMEOUT');
    const again = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'again', executionId: id });
    expectOk(again);
    expect(again.data).toBe('again');
  });

  it('QUEUE_FULL from the stream bound, enforced by the server for a burst from two hosts at once', async () => {
    // A pool without workers: nothing leaves the stream while the burst arrives.
    const idlePool = newPool('burst');
    const hosts = [0, 1].map(() => make({ pool: idlePool, queueBound: 5 }));
    const burst: Array<Promise<ExecutionResult>> = [];
    for (let i = 0; i < 8; i++) for (const host of hosts) burst.push(host.execute({ pluginId: BASIC, handlerId: 'echo', input: i }, { timeoutMs: 3000 }));
    const codes = (await Promise.all(burst)).map((r) => (r.ok ? 'ok' : r.error.code));
    expect(codes.filter((c) => c === 'QUEUE_FULL')).toHaveLength(11);
    expect(codes.filter((c) => c === 'TIMEOUT')).toHaveLength(5);
    const full = (await Promise.all(burst)).find((r) => !r.ok && r.error.code === 'QUEUE_FULL');
    expect(full && !full.ok && full.error.details).toMatchObject({ maxQueue: 5 });
    // Said as the bound the hosts set, not as a limit someone set on the stream by hand (JetStream's other "maximum … exceeded").
    expect(full && !full.ok && full.error.message).toMatch(/^The queue of pool "[^"]+" is full: 5 executions wait for a worker \(the stream's queueBound\); nothing ran$/);
    // None ran: the refused and those that timed out waiting in the stream count in byOutcome only, not as run times.
    for (const host of hosts) {
      const stats = await host.stats();
      expect(stats.total).toBe(8);
      expect(stats.latency.total.count).toBe(0);
    }
  });

  it('the wait in the stream for a worker is queue wait in meta, not run time', async () => {
    const own = newPool('wait-split');
    const worker = await startExecutionWorker({ connection: { servers: server!.url }, pool: own, plugins: [QUEUE_PLUGIN, fixturePlugins.basic], backend: { type: 'in-process' }, concurrency: 1 });
    try {
      const backend = make({ pool: own });
      let running = false;
      const busy = backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'mark', input: { file: path.join(markers, 'wait-split.log'), ms: 1000 } }, { onEvent: () => (running = true) });
      await waitFor(() => running, 10_000);
      // Behind it: the only slot is busy for about a second more.
      const behind = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'behind' });
      expectOk(await busy);
      expectOk(behind);
      expect(behind.meta.queueWaitMs).toBeGreaterThan(800);
      expect(behind.meta.runMs).toBeLessThan(behind.meta.queueWaitMs);
      // Its run counts from when a worker took it (a reply or two away), not from the hand-over, nor nothing at all.
      expect(behind.meta.runMs).toBeGreaterThan(0);
    } finally {
      await worker.close();
    }
  });

  it("a worker runs as many tasks at once as its concurrency, past its local backend's own default (in-process: 64)", async () => {
    const wide = newPool('wide');
    const slots = 65;
    const worker = await startExecutionWorker({ connection: { servers: server!.url }, pool: wide, plugins: [fixturePlugins.basic], backend: { type: 'in-process' }, concurrency: slots });
    try {
      const backend = make({ pool: wide, maxConcurrency: slots, permissions: { platform: { meet: true } } });
      // Each waits inside its handler until all of them are: one held back by the worker's local backend fails them all.
      const results = await Promise.all(Array.from({ length: slots }, () => backend.execute({ pluginId: BASIC, handlerId: 'meet', input: { group: 'wide', size: slots } }, { timeoutMs: 30_000 })));
      expect(results.map((result) => (result.ok ? result.data : result.error.message))).toEqual(Array.from({ length: slots }, () => ({ met: slots })));
    } finally {
      await worker.close();
    }
  }, 60_000);

  it('a busy worker holds no task it has no slot for: one that starts later takes it at once', async () => {
    const slotPool = newPool('slots');
    const first = await startWorker({ natsUrl: server!.url, pool: slotPool, backend: 'in-process', concurrency: 1 });
    const nc = await connect({ servers: server!.url });
    try {
      const backend = make({ pool: slotPool });
      let running = false;
      // Held until released, not for a fixed time: on a loaded machine the second worker's start took longer than 4 s.
      const release = path.join(markers, 'slots.release');
      const long = backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'mark', input: { file: path.join(markers, 'slots.log'), release } }, { onEvent: () => (running = true) });
      await waitFor(() => running, 10_000);
      const waiting = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'next' });
      // The waiting task stays in the stream: delivered to nobody, acknowledged by nobody.
      const jsm = await jetstreamManager(nc);
      await waitFor(async () => (await jsm.consumers.info(`KBEXEC_${slotPool}`, `${slotPool}-workers`)).num_pending === 1, 5_000);
      const consumer = await jsm.consumers.info(`KBEXEC_${slotPool}`, `${slotPool}-workers`);
      expect(consumer.num_ack_pending).toBe(0);
      const second = await startWorker({ natsUrl: server!.url, pool: slotPool, backend: 'in-process', concurrency: 1 });
      try {
        const next = await waiting;
        expectOk(next);
        expect(next.meta.runnerId).toBe(second.id);
        await writeFile(release, '');
        expectOk(await long);
      } finally {
        await second.stop();
      }
    } finally {
      await nc.close();
      await first.stop();
    }
  }, 30_000);

  it('a consumer or a whole stream deleted under a pool is made again, and the next executions run', async () => {
    const lonePool = newPool('consumer');
    const worker = await startWorker({ natsUrl: server!.url, pool: lonePool, backend: 'in-process', concurrency: 2 });
    const nc = await connect({ servers: server!.url });
    try {
      const backend = make({ pool: lonePool });
      expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'before' }));
      const jsm = await jetstreamManager(nc);
      // The worker's consumer: the worker makes it again.
      await jsm.consumers.delete(`KBEXEC_${lonePool}`, `${lonePool}-workers`);
      const after = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'after' }, { timeoutMs: 15_000 });
      expectOk(after);
      expect(after.data).toBe('after');
      // The stream (its consumer goes with it): the host makes it again before it sends the task.
      await jsm.streams.delete(`KBEXEC_${lonePool}`);
      const again = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'again' }, { timeoutMs: 15_000 });
      expectOk(again);
      expect(again.data).toBe('again');
    } finally {
      await nc.close();
      await worker.stop();
    }
  }, 30_000);

  it('a task removed from the stream before any worker took it (the stream purged) fails saying so, not as a TIMEOUT blaming the workers', async () => {
    const emptyPool = newPool('purged');
    const nc = await connect({ servers: server!.url });
    try {
      const backend = make({ pool: emptyPool });
      // No worker serves this pool: the task waits in the stream.
      const waiting = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'never' }, { timeoutMs: 60_000 });
      const jsm = await jetstreamManager(nc);
      const stream = `KBEXEC_${emptyPool}`;
      await waitFor(async () => (await jsm.streams.info(stream).catch(() => undefined))?.state.messages === 1, 10_000);
      await jsm.streams.purge(stream);
      const result = await waiting;
      expectError(result, 'WORKER_CRASHED');
      expect(result.error.message).toBe(
        'Handler "echo" of plugin "@conformance/basic" did not run: its task was removed from the pool\'s stream before any worker took it (the stream was purged, the message deleted, its max_msgs lowered below the tasks waiting, or the stream made anew): it never ran',
      );
      expect(result.error.details).toMatchObject({ reason: 'runner-lost' });
    } finally {
      await nc.close();
    }
  }, 30_000);

  it("a stream deleted under a running host and made again by a worker's defaults gets the host's bound back, without a publish failing first", async () => {
    const boundPool = newPool('rebound');
    const stream = `KBEXEC_${boundPool}`;
    const nc = await connect({ servers: server!.url });
    try {
      const backend = make({ pool: boundPool, queueBound: 3 });
      // Connects, and makes the stream with this host's bound.
      await backend.health();
      const jsm = await jetstreamManager(nc);
      expect((await jsm.streams.info(stream)).config.max_msgs).toBe(3);
      await jsm.streams.delete(stream);
      // What a worker's puller does when it finds the stream gone: make it with default settings.
      await jsm.streams.add({ name: stream, description: 'kb-plugin-exec pool tasks (made by a worker, with default settings)', subjects: [`kbexec.${boundPool}.tasks`], retention: RetentionPolicy.Workqueue, max_msgs: 1000, discard: DiscardPolicy.New });
      await waitFor(async () => (await jsm.streams.info(stream)).config.max_msgs === 3, 15_000);
      expect(((await backend.stats()).runners as QueueRunnerStats).queueBound).toBe(3);
      // Deleted and left gone: the host makes it again by itself.
      await jsm.streams.delete(stream);
      await waitFor(async () => (await jsm.streams.info(stream).catch(() => undefined))?.config.max_msgs === 3, 15_000);
    } finally {
      await nc.close();
    }
  }, 40_000);

  it("a host started with a lower queueBound while tasks wait leaves the bound as it is (the server would drop the oldest waiting tasks), said in a warning", async () => {
    const sharedPool = newPool('lower-bound');
    const stream = `KBEXEC_${sharedPool}`;
    const nc = await connect({ servers: server!.url });
    const warnings: Error[] = [];
    const onWarning = (warning: Error): void => void warnings.push(warning);
    process.on('warning', onWarning);
    try {
      const first = make({ pool: sharedPool, queueBound: 50 });
      // No worker yet: the ten wait in the stream.
      const waiting = Array.from({ length: 10 }, (_, i) => first.execute({ pluginId: BASIC, handlerId: 'echo', input: i }, { timeoutMs: 30_000 }));
      const jsm = await jetstreamManager(nc);
      await waitFor(async () => (await jsm.streams.info(stream).catch(() => undefined))?.state.messages === 10, 10_000);
      const second = make({ pool: sharedPool, queueBound: 2 });
      await second.health();
      const info = await jsm.streams.info(stream);
      expect(info.state.messages).toBe(10);
      expect(info.config.max_msgs).toBe(50);
      expect(warnings.find((w) => (w as { code?: string }).code === 'KB_PLUGIN_QUEUE_BOUND')?.message).toContain(`queueBound 2 is not in effect for pool "${sharedPool}": 10 tasks wait`);
      const worker = await startExecutionWorker({ connection: { servers: server!.url }, pool: sharedPool, plugins: [fixturePlugins.basic], backend: { type: 'in-process' }, concurrency: 2 });
      try {
        const results = await Promise.all(waiting);
        expect(results.map((r) => (r.ok ? r.data : r.error.code))).toEqual(Array.from({ length: 10 }, (_, i) => i));
      } finally {
        await worker.close();
      }
    } finally {
      process.off('warning', onWarning);
      await nc.close();
    }
  }, 60_000);

  it('a stream or consumer of the pool made by hand with settings the pool cannot use: the host, the worker and health() name what is wrong and how to fix it', async () => {
    const handPool = newPool('by-hand');
    const stream = `KBEXEC_${handPool}`;
    const nc = await connect({ servers: server!.url });
    try {
      const jsm = await jetstreamManager(nc);
      // `nats stream add` with its defaults: limits retention, so taken tasks would stay and fill the bound.
      await jsm.streams.add({ name: stream, subjects: [`kbexec.${handPool}.tasks`], retention: RetentionPolicy.Limits });
      const backend = make({ pool: handPool });
      const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo' });
      expectError(result, 'WORKER_CRASHED');
      expect(result.error.message).toContain(`cannot use pool "${handPool}": The stream ${stream} has retention "limits", not "workqueue"`);
      expect(result.error.message).toContain(`nats stream rm ${stream}`);
      const health = await backend.health();
      expect(health.ok).toBe(false);
      expect(health.problems.join('\n')).toContain('has retention "limits"');
      const worker = startExecutionWorker({ connection: { servers: server!.url }, pool: handPool, plugins: [fixturePlugins.basic], backend: { type: 'in-process' } });
      await expect(worker).rejects.toMatchObject({ name: 'QueueServerError', problem: 'misconfigured', message: expect.stringContaining('has retention "limits"') });
      // A push consumer of the pool's consumer name: workers pull.
      await jsm.streams.delete(stream);
      await jsm.streams.add({ name: stream, subjects: [`kbexec.${handPool}.tasks`], retention: RetentionPolicy.Workqueue });
      await jsm.consumers.add(stream, { durable_name: `${handPool}-workers`, deliver_subject: 'somewhere', ack_policy: AckPolicy.Explicit });
      const pushed = startExecutionWorker({ connection: { servers: server!.url }, pool: handPool, plugins: [fixturePlugins.basic], backend: { type: 'in-process' } });
      await expect(pushed).rejects.toMatchObject({ problem: 'misconfigured', message: expect.stringContaining(`The consumer ${handPool}-workers of stream ${stream} is a push consumer (workers pull)`) });
      // The running host reads it too: said at once, not a TIMEOUT waiting for a worker.
      const onPush = await backend.execute({ pluginId: BASIC, handlerId: 'echo' });
      expectError(onPush, 'WORKER_CRASHED');
      expect(onPush.error.message).toContain('is a push consumer (workers pull)');
      expect((await backend.health()).problems.join('\n')).toContain('is a push consumer');
    } finally {
      await nc.close();
    }
  }, 30_000);

  it('an id already running on a worker for another host: refused there by name, and the first host\'s execution keeps its messages', async () => {
    // An id is a host's own (used again once its execution is over): two hosts may send one at once.
    const sharedPool = newPool('same-id');
    const worker = await startWorker({ natsUrl: server!.url, pool: sharedPool, backend: 'in-process', concurrency: 2 });
    const nc = await connect({ servers: server!.url });
    try {
      const host = (value: string) =>
        make({ pool: sharedPool, platform: { kv: { get: async () => value } }, permissions: { platform: { kv: true } } });
      const [first, second] = [host('first host'), host('second host')];
      expectOk(await first.execute({ pluginId: BASIC, handlerId: 'echo', input: 'warm' }));
      const request = { pluginId: QUEUE_PROBE, handlerId: 'kv-get', input: { key: 'k', afterMs: 3000 }, executionId: 'one-id' };
      const early = first.execute(request, { timeoutMs: 10_000 });
      await new Promise((resolve) => setTimeout(resolve, 1500));
      const refused = await second.execute(request, { timeoutMs: 10_000 });
      expectError(refused, 'VALIDATION_ERROR');
      expect(refused.error.message).toContain(`Execution id "one-id" is running on worker ${worker.id}`);
      expect(refused.error.details).toMatchObject({ path: 'executionId', reason: 'duplicate' });
      // Its platform call, made after the second host's task came and went, is answered.
      const a = await early;
      expectOk(a);
      expect(a.data).toEqual({ ok: true, value: 'first host' });
    } finally {
      await nc.close();
      await worker.stop();
    }
  }, 30_000);

  it('two live hosts sending one id at the same moment: one runs it, the other is refused as a duplicate (not made to wait and run it after)', async () => {
    const sharedPool = newPool('same-id-at-once');
    const worker = await startWorker({ natsUrl: server!.url, pool: sharedPool, backend: 'in-process', concurrency: 2 });
    try {
      const host = () => make({ pool: sharedPool, platform: { kv: { get: async () => 'v' } }, permissions: { platform: { kv: true } } });
      const [first, second] = [host(), host()];
      await Promise.all([first, second].map(async (host) => expectOk(await host.execute({ pluginId: BASIC, handlerId: 'echo', input: 'warm' }))));
      for (let round = 0; round < 3; round++) {
        const request = { pluginId: QUEUE_PROBE, handlerId: 'kv-get', input: { key: 'k', afterMs: 1500 }, executionId: `at-once-${round}` };
        const results = await Promise.all([first, second].map((host) => host.execute(request, { timeoutMs: 10_000 })));
        const refused = results.filter((result) => !result.ok);
        expect(refused, JSON.stringify(results.map((r) => (r.ok ? 'ok' : r.error.message)))).toHaveLength(1);
        expectError(refused[0]!, 'VALIDATION_ERROR');
        expect(refused[0]!.error.details).toMatchObject({ path: 'executionId', reason: 'duplicate' });
      }
    } finally {
      await worker.stop();
    }
  }, 60_000);

  it('a worker whose clock is a minute ahead of the host\'s, or behind, runs an execution for the time the host gives it', async () => {
    for (const clockOffsetMs of [60_000, -60_000]) {
      const skewedPool = newPool('clock');
      const worker = await startWorker({ natsUrl: server!.url, pool: skewedPool, backend: 'in-process', concurrency: 1, clockOffsetMs });
      try {
        const backend = make({ pool: skewedPool });
        const file = path.join(markers, `clock${clockOffsetMs}.log`);
        const done = await backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'mark', input: { file, ms: 1500 } }, { timeoutMs: 5000 });
        expectOk(done);
        expect(done.data).toEqual({ done: true });
        // Past the host's deadline the handler is stopped there, as on a worker with the right time.
        const stopped = await backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'mark', input: { file } }, { timeoutMs: 1500 });
        expectError(stopped, 'TIMEOUT');
        await waitFor(async () => (await marks(file)).includes(`${stopped.meta.executionId} signal ABORTED`), 5000);
      } finally {
        await worker.stop();
      }
    }
  }, 60_000);

  it('a host more impatient than its workers (workerLostMs shorter than their heartbeatMs) does not take them for lost', async () => {
    // The shared workers beat every second; this host reports a worker lost after 300 ms of silence.
    const backend = make({ workerLostMs: 300 });
    const result = await backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'mark', input: { file: path.join(markers, 'impatient.log'), ms: 1500 } });
    expectOk(result);
    expect(result.data).toEqual({ done: true });
    // Between two of a worker's presence messages (a second apart) it is still one of the pool's.
    await new Promise((resolve) => setTimeout(resolve, 600));
    const health = await backend.health();
    expect(health.problems).toEqual([]);
    expect(((await backend.stats()).runners as QueueRunnerStats).workers).toHaveLength(2);
  });

  it('a worker closed while it beats faster for an impatient host leaves nothing running', () => {
    // A process of its own, with no process.exit: it ends only when nothing of either is left (the
    // heartbeat timer the impatient caller made faster included).
    const entry = pathToFileURL(path.resolve('dist/index.js')).href;
    const script = `
      import { QueueBackend, startExecutionWorker } from ${JSON.stringify(entry)};
      const connection = { servers: ${JSON.stringify(server!.url)} };
      const pool = ${JSON.stringify(newPool('impatient-close'))};
      const plugins = [${JSON.stringify(fixturePlugins.basic)}];
      const worker = await startExecutionWorker({ connection, pool, backend: { type: 'in-process' }, plugins, concurrency: 1 });
      const host = new QueueBackend({ connection, pool, plugins, workerLostMs: 300, workspace: false });
      const pending = host.execute({ pluginId: '@conformance/basic', handlerId: 'never-resolves' }, { timeoutMs: 60_000 });
      await new Promise((resolve) => setTimeout(resolve, 1000));
      await worker.close();
      const result = await pending;
      await host.shutdown();
      console.log(result.ok ? 'ok' : result.error.code);`;
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 25_000, env: { PATH: process.env.PATH ?? '' } });
    expect(run.stderr).toBe('');
    expect(run.signal).toBeNull();
    // The worker stopped it (its handler ignores its signal): for the caller, which never
    // aborted it, its worker was lost.
    expect(run.stdout.trim()).toBe('WORKER_CRASHED');
  }, 40_000);

  it('two workers given one id each warn that hosts take them for one, and both still serve', async () => {
    const twinPool = newPool('twins');
    const twins = await Promise.all([0, 1].map(() => startWorker({ natsUrl: server!.url, pool: twinPool, backend: 'in-process', concurrency: 1, id: 'twin', heartbeatMs: 200 })));
    try {
      for (const twin of twins) await waitFor(() => twin.output().includes('KB_PLUGIN_WORKER_ID_IN_USE'), 5000);
      for (const twin of twins) expect(twin.output()).toMatch(/Another worker of pool "twins-[0-9a-f]+" has this worker's id "twin" \(pid \d+ on /);
      const backend = make({ pool: twinPool });
      const results = await Promise.all(Array.from({ length: 4 }, (_, i) => backend.execute({ pluginId: BASIC, handlerId: 'echo', input: i })));
      expect(results.map((r) => (r.ok ? r.data : r.error.code))).toEqual([0, 1, 2, 3]);
    } finally {
      await Promise.all(twins.map((twin) => twin.stop()));
    }
  }, 30_000);

  it('streamStorage file on a pool whose stream a worker made first (memory): said in a warning and in health(), not ignored', async () => {
    const storagePool = newPool('storage');
    const worker = await startWorker({ natsUrl: server!.url, pool: storagePool, backend: 'in-process', concurrency: 1 });
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => warnings.push(warning);
    process.on('warning', onWarning);
    try {
      const backend = make({ pool: storagePool, streamStorage: 'file' });
      expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'still runs' }));
      const problems = (await backend.health()).problems;
      expect(problems).toHaveLength(1);
      expect(problems[0]).toContain(`streamStorage 'file' is not in effect: the stream KBEXEC_${storagePool} was made with memory storage`);
      await waitFor(() => warnings.some((w) => (w as { code?: string }).code === 'KB_PLUGIN_QUEUE_STORAGE'), 2000);
      // A pool whose stream a host with file storage made (health() connects it): nothing to say.
      const filePool = newPool('storage-file');
      const fileHost = make({ pool: filePool, streamStorage: 'file' });
      expect((await fileHost.health()).problems.join()).not.toContain('streamStorage');
      const other = await startWorker({ natsUrl: server!.url, pool: filePool, backend: 'in-process', concurrency: 1 });
      try {
        expectOk(await fileHost.execute({ pluginId: BASIC, handlerId: 'echo', input: 'file' }));
        expect((await fileHost.health()).problems).toEqual([]);
      } finally {
        await other.stop();
      }
    } finally {
      process.off('warning', onWarning);
      await worker.stop();
    }
  }, 30_000);

  it('leaves no workspace on the workers', async () => {
    expect(await leftWorkspaces(workers)).toEqual([]);
  });
});

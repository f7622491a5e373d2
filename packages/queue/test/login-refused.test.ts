// A server that refuses the pool's logins for a while (restarted with a user list that lacks
// theirs, a credentials rotation half done) is a pause, as a restart is: nats.js gives up after two
// refused logins in a row unless told not to, and then the host and worker were dead for good.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { BASIC, expectError, expectOk, fixturePlugins, waitFor } from '@kb-labs/plugin-execution-conformance';
import { QueueBackend, startExecutionWorker } from '@kb-labs/plugin-execution-queue';
import { expect, it } from 'vitest';
import { startNatsServer } from '../../../scripts/nats-server.mjs';
import { QUEUE_PLUGIN, newPool, startWorker } from './helpers.js';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

it('host and worker reconnect through a spell of refused logins, the worker saying so on stderr, and serve again', async () => {
  const first = await startNatsServer();
  const port = Number(new URL(first.url).port);
  const pool = newPool('login-refused');
  const worker = await startWorker({ natsUrl: first.url, pool, backend: 'in-process', concurrency: 1 });
  const backend = new QueueBackend({ connection: { servers: first.url }, pool, plugins: [fixturePlugins.basic, QUEUE_PLUGIN] });
  let back: Awaited<ReturnType<typeof startNatsServer>> | undefined;
  try {
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }));
    await first.stop();
    const refusing = await startNatsServer({ port, authorization: '{ users = [ { user: someone, password: else } ] }' });
    // Reconnection is tried every quarter of a second: many refusals in a row.
    await sleep(2500);
    await refusing.stop();
    back = await startNatsServer({ port });
    await waitFor(async () => (await backend.health()).ok, 15_000);
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 2 }, { timeoutMs: 20_000 });
    expectOk(result);
    expect(result.data).toBe(2);
    const said = worker.output();
    expect(said).toMatch(/Worker \S+ lost its connection to the NATS server \(\S+\); it reconnects/);
    expect(said).toMatch(/Worker \S+ is refused by the NATS server as it reconnects \(.*[Aa]uthorization.*\); it keeps trying/);
    expect(said).toMatch(/Worker \S+ is connected to the NATS server again/);
    // Once per spell, not at every refused attempt.
    expect(said.match(/is refused by the NATS server/g)).toHaveLength(1);
  } finally {
    await backend.shutdown({ timeoutMs: 2000 });
    await worker.stop();
    await back?.stop();
    await first.stop();
  }
}, 60_000);

it("a password changed under a running host (the server's config reloaded): what ran fails at once, health() and an unstarted execution's TIMEOUT say the login is refused, and it serves once the login is taken again", async () => {
  const users = (password: string) => `{ users = [ { user: kb, password: ${password} } ] }`;
  const server = await startNatsServer({ authorization: users('before') });
  // The server reads its config again on SIGHUP, and closes the connections whose login it no longer takes.
  const reload = async (from: string, to: string) => {
    await writeFile(server.configFile, (await readFile(server.configFile, 'utf8')).replace(users(from), users(to)));
    process.kill(server.pid, 'SIGHUP');
  };
  const connection = { servers: server.url, user: 'kb', pass: 'before' };
  const pool = newPool('login-changed');
  const worker = await startExecutionWorker({ connection, pool, plugins: [fixturePlugins.basic], backend: { type: 'in-process' } });
  const backend = new QueueBackend({ connection, pool, plugins: [fixturePlugins.basic] });
  try {
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }));
    let started!: () => void;
    const begun = new Promise<void>((resolve) => (started = resolve));
    const running = backend.execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 60_000 } }, { timeoutMs: 90_000, onEvent: () => started() });
    await begun;
    await reload('before', 'after');
    const lost = await running;
    expectError(lost, 'WORKER_CRASHED');
    expect(lost.error.message).toMatch(/lost its connection to the NATS server/);
    const refused = /the connection to the NATS server is reconnecting: the server refuses this host's login as it reconnects \(Authorization Violation\); it keeps trying: check the server's users and connection\.user\/pass, token, seed or credsFile/;
    await waitFor(async () => (await backend.health()).problems?.some((p) => refused.test(p)) === true, 10_000);
    const waited = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 2 }, { timeoutMs: 1500 });
    expectError(waited, 'TIMEOUT');
    expect(waited.error.message).toMatch(refused);
    await reload('after', 'before');
    await waitFor(async () => (await backend.health()).ok, 15_000);
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 3 }, { timeoutMs: 20_000 }));
  } finally {
    await backend.shutdown({ timeoutMs: 2000 });
    await worker.close();
    await server.stop();
  }
}, 60_000);

it('a creds file replaced on disk (credentials rotated) is read again at the reconnection: host and worker log in with the new one and serve', async () => {
  const first = { seed: 'SUAEF4NQGW2WZLEZLJIVPIULUYU3DTWJIHLA6Y3YWX2FM3LXUHSKMWA6UM', user: 'UAP5ICZ55ZI3MFGS73675ZZQPLUNRDUU4ATEX4JXZN4TKOL53VD5ZSM5' };
  const next = { seed: 'SUAN2FDWJLSBTIKJIFMPCG4XZZ6NJRPDEAXHCX772755LJHIQ4TBDL4F2A', user: 'UDMGRTZHPJJE2DES4VDVBMUEPH2DE7Y7F3KUIHWMVWVP4TWTNOY747T3' };
  // A server without an operator goes by the NKey alone; the JWT a creds file carries is not read.
  const creds = (seed: string) => `-----BEGIN NATS USER JWT-----\nunused.by.this.server\n------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\n${seed}\n------END USER NKEY SEED------\n`;
  const users = (user: string) => `{ users = [ { nkey: ${user} } ] }`;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'kb-queue-creds-'));
  const credsFile = path.join(dir, 'pool.creds');
  await writeFile(credsFile, creds(first.seed));
  const server = await startNatsServer({ authorization: users(first.user) });
  const connection = { servers: server.url, credsFile };
  const pool = newPool('creds-rotated');
  const said: string[] = [];
  const onWarning = (warning: Error & { code?: string }) => warning.code === 'KB_PLUGIN_WORKER_CONNECTION' && said.push(warning.message);
  process.on('warning', onWarning);
  const worker = await startExecutionWorker({ connection, pool, plugins: [fixturePlugins.basic], backend: { type: 'in-process' } });
  const backend = new QueueBackend({ connection, pool, plugins: [fixturePlugins.basic] });
  try {
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }));
    // The rotation: the new file in place, then the server's users changed and its config reloaded (the old login's connections closed).
    await writeFile(credsFile, creds(next.seed));
    await writeFile(server.configFile, (await readFile(server.configFile, 'utf8')).replace(users(first.user), users(next.user)));
    process.kill(server.pid, 'SIGHUP');
    // The worker (in this process) says it lost its connection, then that it has it again.
    await waitFor(() => said.some((w) => /is connected to the NATS server again/.test(w)), 15_000);
    expect(said[0]).toMatch(/lost its connection to the NATS server/);
    await waitFor(async () => (await backend.health()).ok, 15_000);
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 2 }, { timeoutMs: 20_000 });
    expectOk(result);
    expect(result.data).toBe(2);
  } finally {
    await backend.shutdown({ timeoutMs: 2000 });
    await worker.close();
    await server.stop();
    process.off('warning', onWarning);
    await rm(dir, { recursive: true, force: true });
  }
}, 60_000);

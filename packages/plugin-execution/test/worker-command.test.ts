import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BASIC, HOSTILE, expectOk, fixturePlugins } from '@kb-labs/plugin-execution-conformance';
import { createExecutionBackend, type PermissionSpec } from '@kb-labs/plugin-execution';
import { afterAll, beforeAll, expect, it } from 'vitest';

const here = path.dirname(fileURLToPath(import.meta.url));
const cli = path.resolve(here, '../dist/cli.js');

let server: { url: string; stop(): Promise<void> };

beforeAll(async () => {
  // A test that needs the server fails without it (the script says how to install it).
  const { startNatsServer } = (await import(path.resolve(here, '../../../scripts/nats-server.mjs'))) as { startNatsServer: () => Promise<typeof server> };
  server = await startNatsServer();
}, 30_000);

afterAll(async () => {
  await server?.stop();
});

/** `kb-plugin-exec worker …args` on the test's server, resolved once it says it is ready. */
async function startCliWorker(args: string[], env: Record<string, string> = {}, plugins = fixturePlugins.basic, nats = server.url): Promise<{ child: ReturnType<typeof spawn>; exited: Promise<number | NodeJS.Signals | null>; output: () => string }> {
  const child = spawn(process.execPath, [cli, 'worker', '--nats', nats, '--plugins', plugins, ...args], {
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  // Its exit code, or the signal that ended it.
  const exited = new Promise<number | NodeJS.Signals | null>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal)));
  try {
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', () => /ready \S+/.test(output) && resolve());
      child.once('exit', () => reject(new Error(`the worker exited before it was ready:\n${output}`)));
    });
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  }
  return { child, exited, output: () => output };
}

// SIGHUP (its terminal closed) too: before, Node's default action ended it on the spot, what ran
// written off. Drained, it ends by SIGHUP itself (its terminal may be gone: see endProcess).
it.each([['SIGTERM', 0], ['SIGHUP', 'SIGHUP']] as const)('kb-plugin-exec worker serves a pool, and drains on %s: what runs finishes, then it ends (%s)', async (signal, end) => {
  const pool = `cli-${randomBytes(4).toString('hex')}`;
  const { child, exited, output } = await startCliWorker(['--backend', 'in-process', '--concurrency', '2', '--pool', pool]);
  const backend = createExecutionBackend({ type: 'queue', connection: { servers: server.url }, pool, plugins: [fixturePlugins.basic], workspace: false });
  try {
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'via the cli' }));
    // `kb-plugin-exec run --backend queue` sends its one execution to the same pool.
    const run = spawnSync(process.execPath, [cli, 'run', fixturePlugins.basic, 'echo', '--backend', 'queue', '--nats', server.url, '--pool', pool, '--input', '"from run"', '--json'], {
      env: { PATH: process.env.PATH ?? '' },
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(run.status, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ ok: true, data: 'from run', meta: { backend: 'queue' } });
    let started = false;
    const running = backend.execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 500 } }, { onEvent: () => (started = true) });
    while (!started) await new Promise((resolve) => setTimeout(resolve, 10));
    child.kill(signal);
    const result = await running;
    expectOk(result);
    expect(await exited, output()).toBe(end);
    expect(output()).toContain(`${signal}: draining`);
  } finally {
    child.kill('SIGKILL');
    await backend.shutdown({ timeoutMs: 1000 });
  }
});

it('kb-plugin-exec worker --concurrency 1 runs one execution at a time, however many wait', async () => {
  // A handler that says how many of its executions ran in the worker's process when it began (in-process: one module instance).
  const plugin = await mkdtemp(path.join(os.tmpdir(), 'kb-cli-overlap-'));
  await writeFile(path.join(plugin, 'kb.plugin.json'), JSON.stringify({ id: '@t/overlap', version: '1.0.0', handlers: { overlap: { entry: './overlap.mjs' } } }));
  await writeFile(path.join(plugin, 'overlap.mjs'), 'let running = 0;\nexport default async () => {\n  const atStart = ++running;\n  await new Promise((resolve) => setTimeout(resolve, 1000));\n  running--;\n  return atStart;\n};\n');
  const pool = `cli-${randomBytes(4).toString('hex')}`;
  const { child } = await startCliWorker(['--backend', 'in-process', '--concurrency', '1', '--pool', pool], {}, plugin);
  const backend = createExecutionBackend({ type: 'queue', connection: { servers: server.url }, pool, plugins: [plugin], workspace: false });
  try {
    const results = await Promise.all([1, 2].map(() => backend.execute({ pluginId: '@t/overlap', handlerId: 'overlap' })));
    expect(results.map((result) => (result.ok ? result.data : result.error.code))).toEqual([1, 1]);
  } finally {
    child.kill('SIGKILL');
    await backend.shutdown({ timeoutMs: 1000 });
    await rm(plugin, { recursive: true, force: true });
  }
});

it('kb-plugin-exec worker: a second signal while it drains stops what runs now (its caller told WORKER_CRASHED) and exits 130; nothing is left in its workspace root', async () => {
  const pool = `cli-${randomBytes(4).toString('hex')}`;
  const root = await mkdtemp(path.join(os.tmpdir(), 'kb-cli-drain-'));
  const { child, exited, output } = await startCliWorker(['--backend', 'in-process', '--pool', pool, '--workspace-root', root]);
  const backend = createExecutionBackend({ type: 'queue', connection: { servers: server.url }, pool, plugins: [fixturePlugins.basic], workspace: false });
  try {
    let started = false;
    const running = backend.execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 20_000 } }, { onEvent: () => (started = true), timeoutMs: 60_000 });
    while (!started) await new Promise((resolve) => setTimeout(resolve, 10));
    child.kill('SIGINT');
    await new Promise((resolve) => setTimeout(resolve, 300));
    child.kill('SIGINT');
    // Before: Node's default for the second signal killed it, exit code null, and the caller
    // waited for heartbeats that never came.
    expect(await exited, output()).toBe(130);
    const result = await running;
    expect(result.ok).toBe(false);
    expect(result.ok ? undefined : result.error.code).toBe('WORKER_CRASHED');
    // The first said what it does, so that the wait is not taken for a hang.
    expect(output()).toMatch(/SIGINT: draining: taking nothing new, waiting up to 30000 ms for the 1 execution\(s\) running; SIGINT again stops them now\n/);
    expect(output()).toContain('SIGINT again: stopping what runs now');
    expect(await readdir(root)).toEqual([]);
  } finally {
    child.kill('SIGKILL');
    await backend.shutdown({ timeoutMs: 1000 });
    await rm(root, { recursive: true, force: true });
  }
});

it('kb-plugin-exec worker: a third signal exits at once, and the running executions\' workspaces go with it', async () => {
  const pool = `cli-${randomBytes(4).toString('hex')}`;
  const root = await mkdtemp(path.join(os.tmpdir(), 'kb-cli-third-'));
  const { child, exited, output } = await startCliWorker(['--backend', 'worker-pool', '--pool', pool, '--workspace-root', root]);
  const backend = createExecutionBackend({ type: 'queue', connection: { servers: server.url }, pool, plugins: [fixturePlugins.basic] });
  try {
    // A handler that ignores its signal (stopped only once its thread's grace is over), with a workspace on the worker.
    const running = backend.execute({ pluginId: BASIC, handlerId: 'never-resolves' }, { timeoutMs: 60_000 });
    const until = Date.now() + 15_000;
    while ((await readdir(root)).length === 0 && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(await readdir(root), output()).toHaveLength(1);
    child.kill('SIGINT');
    await new Promise((resolve) => setTimeout(resolve, 200));
    child.kill('SIGINT');
    await new Promise((resolve) => setTimeout(resolve, 50));
    child.kill('SIGINT');
    expect(await exited, output()).toBe(130);
    expect((await running).ok).toBe(false);
    expect(await readdir(root)).toEqual([]);
  } finally {
    child.kill('SIGKILL');
    await backend.shutdown({ timeoutMs: 1000 });
    await rm(root, { recursive: true, force: true });
  }
});

it('kb-plugin-exec worker says at start what its executions will meet (a plugin whose entry is not built), as a warning, and serves the rest', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'kb-cli-unbuilt-'));
  await writeFile(path.join(dir, 'kb.plugin.json'), JSON.stringify({ id: '@t/unbuilt', version: '1.0.0', handlers: { run: { entry: './dist/run.mjs' } } }));
  const { child, exited, output } = await startCliWorker(['--backend', 'in-process', '--pool', `cli-${randomBytes(4).toString('hex')}`, '--plugins', dir]);
  try {
    // On stderr, beside "ready" on stdout: the two pipes may arrive in either order.
    for (let i = 0; i < 100 && !output().includes('KB_PLUGIN_WORKER_PROBLEMS'); i++) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(output()).toMatch(/KB_PLUGIN_WORKER_PROBLEMS.*starts with problems its executions will meet: .*@t\/unbuilt/);
    // Right after "ready": before, its signal listeners came just after that line, and a SIGTERM
    // sent as soon as it was read killed the worker (no drain) about one time in four.
    child.kill('SIGTERM');
    expect(await exited, output()).toBe(0);
  } finally {
    child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  }
});

it('kb-plugin-exec worker --backend in-process: a handler that calls process.exit(0) ends the worker with exit 1 and a line naming what happened, its workspace removed; its caller is told WORKER_CRASHED', async () => {
  const pool = `cli-${randomBytes(4).toString('hex')}`;
  const root = await mkdtemp(path.join(os.tmpdir(), 'kb-cli-exit-'));
  const { child, exited, output } = await startCliWorker(['--backend', 'in-process', '--pool', pool, '--workspace-root', root, '--plugins', fixturePlugins.hostile]);
  const backend = createExecutionBackend({ type: 'queue', connection: { servers: server.url }, pool, plugins: [fixturePlugins.hostile], workerLostMs: 1500 });
  try {
    const result = await backend.execute({ pluginId: HOSTILE, handlerId: 'exit', input: { code: 0 } }, { timeoutMs: 30_000 });
    // Before: exit code 0 (the handler's), as if it had drained, and nothing said.
    expect(await exited, output()).toBe(1);
    expect(output()).toMatch(/WORKER_CRASHED: worker \S+ ended by process\.exit\(0\) while 1 execution ran; .*--backend worker-pool or subprocess/);
    expect(result.ok ? undefined : result.error.code).toBe('WORKER_CRASHED');
    expect(await readdir(root)).toEqual([]);
  } finally {
    child.kill('SIGKILL');
    await backend.shutdown({ timeoutMs: 1000 });
    await rm(root, { recursive: true, force: true });
  }
});

it('kb-plugin-exec run --backend queue --prefix reaches a worker started with that --prefix', async () => {
  const pool = `cli-${randomBytes(4).toString('hex')}`;
  const prefix = `custom.p${randomBytes(4).toString('hex')}`;
  const { child, exited, output } = await startCliWorker(['--backend', 'in-process', '--pool', pool, '--prefix', prefix]);
  try {
    const run = spawnSync(process.execPath, [cli, 'run', fixturePlugins.basic, 'echo', '--backend', 'queue', '--nats', server.url, '--pool', pool, '--prefix', prefix, '--input', '"to the prefix"', '--timeout', '15000'], {
      env: { PATH: process.env.PATH ?? '' },
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(run.status, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout)).toBe('to the prefix');
    child.kill('SIGTERM');
    expect(await exited, output()).toBe(0);
  } finally {
    child.kill('SIGKILL');
  }
});

it("kb-plugin-exec worker keeps its login from its handlers: the NATS_* variables it read are gone from its environment, even for a handler that declares them and a host that grants them", async () => {
  const envReader = path.resolve(here, 'fixtures', 'plugins', 'env-reader');
  for (const local of ['in-process', 'subprocess']) {
    const pool = `cli-env-${randomBytes(4).toString('hex')}`;
    // A server without authorization takes any token: the worker logs in with it all the same.
    const { child, exited, output } = await startCliWorker(['--backend', local, '--pool', pool], { NATS_TOKEN: 'worker-secret', KB_PLAIN: 'plain' }, envReader);
    const backend = createExecutionBackend({ type: 'queue', connection: { servers: server.url }, pool, plugins: [envReader], permissions: { env: ['NATS_USER', 'NATS_PASSWORD', 'NATS_TOKEN', 'KB_PLAIN'] }, workspace: false });
    try {
      const result = await backend.execute({ pluginId: '@cli-test/env-reader', handlerId: 'read' }, { timeoutMs: 20_000 });
      expectOk(result);
      // Before: { NATS_TOKEN: 'worker-secret', … }, which logs in as the pool's worker.
      expect(result.data, local).toEqual({ KB_PLAIN: 'plain' });
      child.kill('SIGTERM');
      expect(await exited, output()).toBe(0);
    } finally {
      child.kill('SIGKILL');
      await backend.shutdown({ timeoutMs: 1000 });
    }
  }
});

it('kb-plugin-exec worker whose own machinery a plugin broke (in-process: JSON.stringify replaced) stops taking tasks and exits 1, saying so, for its supervisor to restart it', async () => {
  const poison = path.resolve(here, 'fixtures', 'plugins', 'poison');
  const pool = `cli-poison-${randomBytes(4).toString('hex')}`;
  const { child, exited, output } = await startCliWorker(['--backend', 'in-process', '--pool', pool], {}, poison);
  const backend = createExecutionBackend({ type: 'queue', connection: { servers: server.url }, pool, plugins: [poison], workspace: false });
  try {
    expectOk(await backend.execute({ pluginId: '@cli-test/poison', handlerId: 'poison' }, { timeoutMs: 20_000 }));
    const after = await backend.execute({ pluginId: '@cli-test/poison', handlerId: 'echo', input: 1 }, { timeoutMs: 5_000 });
    expect(after.ok).toBe(false);
    // Before: it stayed in the pool, taking every task and running none, each caller told TIMEOUT.
    const code = await Promise.race([exited, new Promise<string>((resolve) => setTimeout(() => resolve('still serving'), 15_000))]);
    expect(code, output()).toBe(1);
    expect(output()).toContain('[KB_PLUGIN_WORKER_INTERNAL]');
    expect(output()).toMatch(/^ERROR: worker \S+ stopped by itself \(see the warning above\): start it again$/m);
  } finally {
    child.kill('SIGKILL');
    await backend.shutdown({ timeoutMs: 1000 });
  }
}, 60_000);

// An NKey user made for this test (not a secret anywhere): its seed, and the public key the server knows it by.
const TEST_SEED = 'SUAEF4NQGW2WZLEZLJIVPIULUYU3DTWJIHLA6Y3YWX2FM3LXUHSKMWA6UM';
const TEST_NKEY = 'UAP5ICZ55ZI3MFGS73675ZZQPLUNRDUU4ATEX4JXZN4TKOL53VD5ZSM5';

it('kb-plugin-exec worker and run log in with a password from NATS_USER/NATS_PASSWORD, or an NKey seed file (--nkey, its line break left out); a wrong one is QUEUE_SERVER_AUTH_FAILED', async () => {
  const { startNatsServer } = (await import(path.resolve(here, '../../../scripts/nats-server.mjs'))) as { startNatsServer: (o: { authorization: string }) => Promise<typeof server> };
  const guarded = await startNatsServer({ authorization: `{ users = [ { user: kb, password: kb-secret }, { nkey: ${TEST_NKEY} } ] }` });
  const dir = await mkdtemp(path.join(os.tmpdir(), 'kb-cli-nats-'));
  const seedFile = path.join(dir, 'worker.nk');
  await writeFile(seedFile, `${TEST_SEED}\n`);
  const pool = `cli-auth-${randomBytes(4).toString('hex')}`;
  const env = (extra: Record<string, string>) => ({ PATH: process.env.PATH ?? '', ...extra });
  const workerArgs = [cli, 'worker', '--nats', guarded.url, '--plugins', fixturePlugins.basic, '--backend', 'in-process', '--pool', pool];
  const child = spawn(process.execPath, [...workerArgs, '--nkey', seedFile], { env: env({}), stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  try {
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', () => /ready \S+/.test(output) && resolve());
      child.once('exit', () => reject(new Error(`the worker exited before it was ready:\n${output}`)));
    });
    const runArgs = [cli, 'run', fixturePlugins.basic, 'echo', '--backend', 'queue', '--nats', guarded.url, '--pool', pool, '--input', '"logged in"', '--timeout', '15000'];
    const run = spawnSync(process.execPath, runArgs, { env: env({ NATS_USER: 'kb', NATS_PASSWORD: 'kb-secret' }), encoding: 'utf8', timeout: 20_000 });
    expect(run.status, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout)).toBe('logged in');
    const wrong = spawnSync(process.execPath, workerArgs, { env: env({ NATS_USER: 'kb', NATS_PASSWORD: 'not-it' }), encoding: 'utf8', timeout: 20_000 });
    expect(wrong.status).toBe(1);
    expect(wrong.stderr).toMatch(/^QUEUE_SERVER_AUTH_FAILED: /);
    // Said in the command line's terms, not the API's options it cannot set.
    expect(wrong.stderr).toContain('check NATS_USER and NATS_PASSWORD, NATS_TOKEN, --nkey or --creds');
    expect(wrong.stderr).not.toContain('connection.user');
    expect(wrong.stderr).not.toContain('not-it');
    child.kill('SIGTERM');
    expect(await exited, output).toBe(0);
  } finally {
    child.kill('SIGKILL');
    await guarded.stop();
    await rm(dir, { recursive: true, force: true });
  }
});

it('kb-plugin-exec worker and run log in with a token from NATS_TOKEN, or a .creds file from --creds or NATS_CREDS; a wrong token is QUEUE_SERVER_AUTH_FAILED', async () => {
  const { startNatsServer } = (await import(path.resolve(here, '../../../scripts/nats-server.mjs'))) as { startNatsServer: (o: { authorization: string }) => Promise<typeof server> };
  const tokenServer = await startNatsServer({ authorization: '{ token: "kb-token" }' });
  const nkeyServer = await startNatsServer({ authorization: `{ users = [ { nkey: ${TEST_NKEY} } ] }` });
  const dir = await mkdtemp(path.join(os.tmpdir(), 'kb-cli-nats-'));
  // A server without an operator goes by the NKey alone; the JWT a creds file carries is not read.
  const credsFile = path.join(dir, 'pool.creds');
  await writeFile(credsFile, `-----BEGIN NATS USER JWT-----\nunused.by.this.server\n------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\n${TEST_SEED}\n------END USER NKEY SEED------\n`);
  const logins: Array<[string, { url: string }, string[], Record<string, string>]> = [
    ['NATS_TOKEN', tokenServer, [], { NATS_TOKEN: 'kb-token' }],
    ['--creds', nkeyServer, ['--creds', credsFile], {}],
    ['NATS_CREDS', nkeyServer, [], { NATS_CREDS: credsFile }],
  ];
  try {
    for (const [login, guarded, flags, env] of logins) {
      const pool = `cli-login-${randomBytes(4).toString('hex')}`;
      // Before (the login not passed on): the worker exited 1, QUEUE_SERVER_AUTH_FAILED, never ready.
      const { child, exited, output } = await startCliWorker(['--backend', 'in-process', '--pool', pool, ...flags], env, fixturePlugins.basic, guarded.url);
      try {
        const run = spawnSync(process.execPath, [cli, 'run', fixturePlugins.basic, 'echo', '--backend', 'queue', '--nats', guarded.url, '--pool', pool, '--input', JSON.stringify(login), '--timeout', '15000', ...flags], {
          env: { PATH: process.env.PATH ?? '', ...env },
          encoding: 'utf8',
          timeout: 20_000,
        });
        expect(run.status, `${login}: ${run.stderr}`).toBe(0);
        expect(JSON.parse(run.stdout)).toBe(login);
        child.kill('SIGTERM');
        expect(await exited, output()).toBe(0);
      } finally {
        child.kill('SIGKILL');
      }
    }
    const wrong = spawnSync(process.execPath, [cli, 'worker', '--nats', tokenServer.url, '--plugins', fixturePlugins.basic, '--backend', 'in-process'], { env: { PATH: process.env.PATH ?? '', NATS_TOKEN: 'not-it' }, encoding: 'utf8', timeout: 20_000 });
    expect(wrong.status).toBe(1);
    expect(wrong.stderr).toMatch(/^QUEUE_SERVER_AUTH_FAILED: /);
    expect(wrong.stderr).not.toContain('not-it');
  } finally {
    await tokenServer.stop();
    await nkeyServer.stop();
    await rm(dir, { recursive: true, force: true });
  }
}, 90_000);

it('credentials and TLS flags that cannot work are usage errors (exit 2) naming them: a password without a user, a certificate without its key, an --nkey file without a seed, a queue flag on another backend', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'kb-cli-nats-'));
  try {
    const notSeed = path.join(dir, 'not-a-seed');
    await writeFile(notSeed, 'hello\n');
    const worker = (args: string[], extra: Record<string, string> = {}) =>
      spawnSync(process.execPath, [cli, 'worker', '--nats', server.url, '--plugins', fixturePlugins.basic, ...args], { env: { PATH: process.env.PATH ?? '', ...extra }, encoding: 'utf8', timeout: 20_000 });
    const cases: Array<[ReturnType<typeof worker>, string]> = [
      [worker([], { NATS_PASSWORD: 'x' }), 'NATS_PASSWORD is set without NATS_USER: give both, or NATS_TOKEN'],
      [worker([], { NATS_USER: 'u' }), 'NATS_USER is set without NATS_PASSWORD: give both, or NATS_TOKEN'],
      [worker([], { NATS_USER: 'u', NATS_PASSWORD: 'p', NATS_TOKEN: 't' }), 'NATS_USER and NATS_TOKEN are both given: give one way to log in'],
      // A variable left from another setup is named as such.
      [worker(['--nkey', notSeed], { NATS_CREDS: path.join(dir, 'old.creds') }), 'NATS_CREDS and --nkey are both given: give one way to log in'],
      [worker(['--tls-cert', path.join(dir, 'cert.pem')]), '--tls-cert needs --tls-key or NATS_KEY (a client certificate and its key go together)'],
      [worker([], { NATS_CERT: path.join(dir, 'cert.pem') }), 'NATS_CERT needs --tls-key or NATS_KEY (a client certificate and its key go together)'],
      [worker(['--nkey', path.join(dir, 'missing.nk')]), `--nkey ${path.join(dir, 'missing.nk')}: cannot be read (ENOENT)`],
      [worker(['--nkey', notSeed]), `--nkey ${notSeed}: holds no NKey seed (one line starting "S", such as "SU…")`],
      // A local file that cannot be read (before: exit 1, as a login the server refused, or a server it could not reach).
      [worker(['--creds', path.join(dir, 'missing.creds')]), `--creds ${path.join(dir, 'missing.creds')}: cannot be read (ENOENT)`],
      [worker([], { NATS_CREDS: path.join(dir, 'missing.creds') }), `NATS_CREDS ${path.join(dir, 'missing.creds')}: cannot be read (ENOENT)`],
      [worker(['--tls-ca', path.join(dir, 'missing-ca.pem')]), `--tls-ca ${path.join(dir, 'missing-ca.pem')}: cannot be read (ENOENT)`],
      [worker(['--tls-cert', path.join(dir, 'cert.pem'), '--tls-key', notSeed]), `--tls-cert ${path.join(dir, 'cert.pem')}: cannot be read (ENOENT)`],
      // Said with the command line's ways to log in, not the API's connection options.
      [
        spawnSync(process.execPath, [cli, 'worker', '--nats', 'nats://u:p@127.0.0.1:1', '--plugins', fixturePlugins.basic], { env: { PATH: process.env.PATH ?? '' }, encoding: 'utf8', timeout: 20_000 }),
        '--nats: holds credentials (nats://user:pass@host), which the NATS client does not use: give them as NATS_USER and NATS_PASSWORD, or NATS_TOKEN',
      ],
    ];
    for (const [result, said] of cases) {
      expect(result.status, result.stderr).toBe(2);
      expect(result.stderr.split('\n')[0]).toBe(said);
    }
    const elsewhere = spawnSync(process.execPath, [cli, 'run', fixturePlugins.basic, 'echo', '--creds', path.join(dir, 'x.creds')], { env: { PATH: process.env.PATH ?? '' }, encoding: 'utf8', timeout: 20_000 });
    expect(elsewhere.status).toBe(2);
    expect(elsewhere.stderr.split('\n')[0]).toBe('--creds is for --backend queue');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

it("a TLS server the worker and run cannot use is said with the command line's flags (--tls-ca), not the API's connection.tls and caFile", async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'kb-cli-tls-'));
  const openssl = (...args: string[]) => {
    const made = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
    if (made.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${made.stderr}`);
  };
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const { startNatsServer } = (await import(path.resolve(here, '../../../scripts/nats-server.mjs'))) as { startNatsServer: (options: unknown) => Promise<typeof server> };
  let tlsServer: typeof server | undefined;
  try {
    // A private CA, and the server's certificate it signed (for 127.0.0.1); another CA that signed nothing.
    openssl('req', '-x509', ...ec, '-keyout', 'ca-key.pem', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=kb test CA');
    openssl('req', '-x509', ...ec, '-keyout', 'other-key.pem', '-out', 'other-ca.pem', '-days', '2', '-subj', '/CN=kb other CA');
    openssl('req', ...ec, '-keyout', 'server-key.pem', '-out', 'server.csr', '-subj', '/CN=server');
    await writeFile(path.join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1\n');
    openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca-key.pem', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'server.ext');
    tlsServer = await startNatsServer({ tls: { certFile: path.join(dir, 'server.pem'), keyFile: path.join(dir, 'server-key.pem') } });
    const url = tlsServer.url.replace(/^nats:/, 'tls:');
    const env = { PATH: process.env.PATH ?? '' };
    const said = (args: string[]) => {
      const result = spawnSync(process.execPath, [cli, ...args], { env, encoding: 'utf8', timeout: 20_000 });
      expect(result.status, result.stderr).toBe(1);
      // Before: "… give connection.tls (caFile for a private CA; …)", options a command line cannot set.
      expect(result.stderr).not.toMatch(/connection\.tls|caFile/);
      return result.stderr.split('\n')[0];
    };
    // Node's own words come between, as Node says them: Node 24 adds advice of its own (--use-system-ca) after its reason.
    const noCa = /: TLS failed: unable to verify the first certificate(?:; if the root CA is installed locally, try running Node\.js with --use-system-ca)?; the server asks for TLS, or presents a certificate Node does not trust: give --tls-ca \(the CA that signed its certificate, for a private CA; --tls-cert and --tls-key if it wants a client certificate\)$/;
    expect(said(['worker', '--nats', url, '--plugins', fixturePlugins.basic])).toMatch(new RegExp(`^QUEUE_SERVER_UNREACHABLE: The worker could not connect.*${noCa.source}`));
    expect(said(['run', fixturePlugins.basic, 'echo', '--backend', 'queue', '--nats', url, '--input', '1'])).toMatch(noCa);
    const wrongCa = said(['worker', '--nats', url, '--plugins', fixturePlugins.basic, '--tls-ca', path.join(dir, 'other-ca.pem')]);
    expect(wrongCa).toMatch(/; check --tls-ca \(or NATS_CA\): it must hold the CA that signed the server's certificate, and the certificate must name the host in the server URL$/);
  } finally {
    await tlsServer?.stop();
    await rm(dir, { recursive: true, force: true });
  }
}, 60_000);

it('kb-plugin-exec run --backend queue --max-payload-bytes takes the limit the pool\'s workers were given (the CLI host had 20 MiB, whatever they had)', () => {
  const pool = `cli-${randomBytes(4).toString('hex')}`;
  const run = (flags: string[]) =>
    spawnSync(process.execPath, [cli, 'run', fixturePlugins.basic, 'echo', '--no-workspace', '--timeout', '15000', ...flags], { env: { PATH: process.env.PATH ?? '' }, encoding: 'utf8', timeout: 30_000 });
  const queue = ['--backend', 'queue', '--nats', server.url, '--pool', pool];
  // Refused by the host before any worker is asked, naming the limit given (was: "unknown option --max-payload-bytes", exit 2).
  const over = run([...queue, '--max-payload-bytes', '4096', '--input', JSON.stringify('x'.repeat(5000))]);
  expect(over.status, over.stderr).toBe(1);
  // The limit named as the flag that sets it (was: "(maxPayloadBytes: 4096)", the API's option).
  expect(over.stderr).toBe("VALIDATION_ERROR: The input is at least 4.9 KiB encoded, over the queue backend's limit of 4 KiB (--max-payload-bytes 4096)\n");
  for (const [flags, said] of [
    [[...queue, '--max-payload-bytes', '100'], /^--max-payload-bytes: must be an integer from 1024 to 1073741824, got 100$/m],
    [[...queue, '--max-payload-bytes', '20MB'], /^--max-payload-bytes must be a whole number of bytes, got "20MB"$/m],
    [['--max-payload-bytes', '4096'], /^--max-payload-bytes is for --backend queue$/m],
  ] as const) {
    const bad = run([...flags]);
    expect(bad.status, bad.stderr).toBe(2);
    expect(bad.stderr).toMatch(said);
  }
}, 60_000);

it('kb-plugin-exec worker --grant caps what handlers get there, whatever a host grants; --max-payload-bytes sets its limit; bad values are usage errors', async () => {
  const pool = `cli-${randomBytes(4).toString('hex')}`;
  const { child, exited } = await startCliWorker([fixturePlugins.basic, '--backend', 'in-process', '--pool', pool, '--grant', '{"platform":{"kv":["get"]}}', '--max-payload-bytes', '4096'], {}, fixturePlugins.guarded);
  const grant: PermissionSpec = { platform: { kv: true, secrets: true }, env: ['KB_TOKEN'], network: true };
  const backend = createExecutionBackend({ type: 'queue', connection: { servers: server.url }, pool, plugins: [fixturePlugins.guarded, fixturePlugins.basic], permissions: grant, workspace: false });
  try {
    const refused = await backend.execute({ pluginId: '@conformance/guarded', handlerId: 'needs-secrets' }, { timeoutMs: 20_000 });
    expect(refused.ok ? 'ok' : refused.error.code).toBe('PERMISSION_DENIED');
    expect(refused.ok ? '' : refused.error.message).toMatch(/needs permissions worker \S+ \(\S+\) does not grant: .*env:KB_TOKEN/);
    // `run --backend queue` says the cap is the worker's: its own --grant does not reach past it.
    const ran = spawnSync(process.execPath, [cli, 'run', fixturePlugins.guarded, 'needs-secrets', '--backend', 'queue', '--nats', server.url, '--pool', pool, '--no-workspace', '--timeout', '15000', '--grant', JSON.stringify(grant)], {
      env: { PATH: process.env.PATH ?? '' },
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(ran.status, ran.stderr).toBe(1);
    expect(ran.stderr).toMatch(/does not grant: .*env:KB_TOKEN/);
    expect(ran.stderr).toContain(`(the worker's cap: its operator widens it, adding {"platform":{"secrets":true},"env":["KB_TOKEN"],"network":true} to kb-plugin-exec worker --grant)`);
    // Its result, over the worker's limit (an input in the task message itself is taken whatever the limit: the server's max_payload bounds it).
    const large = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'x'.repeat(10_000) }, { timeoutMs: 20_000 });
    expect(large.ok ? 'ok' : large.error.code).toBe('VALIDATION_ERROR');
    expect(large.ok ? '' : large.error.message).toMatch(/^The handler result is .* over the limit of worker \S+ \(\S+\) of 4 KiB/);
  } finally {
    child.kill('SIGTERM');
    await exited;
    await backend.shutdown({ timeoutMs: 1000 });
  }
  for (const [flags, said] of [
    [['--grant', '{nope'], /^--grant is not valid JSON/],
    [['--grant', '{"fs":{"read":"data"}}'], /^--grant is not a permissions object/],
    [['--max-payload-bytes', '20MB'], /^--max-payload-bytes must be a positive integer, got "20MB"/],
    [['--max-payload-bytes', '100'], /^--max-payload-bytes: /],
  ] as const) {
    const bad = spawnSync(process.execPath, [cli, 'worker', '--nats', server.url, '--plugins', fixturePlugins.guarded, ...flags], { env: { PATH: process.env.PATH ?? '' }, encoding: 'utf8', timeout: 20_000 });
    expect(bad.status, bad.stderr).toBe(2);
    expect(bad.stderr).toMatch(said);
  }
}, 60_000);

it('kb-plugin-exec worker stopped by SIGTERM while it joins its pool (before "ready"): says so and exits 0, as its first signal does, instead of dying by the signal', async () => {
  // A NATS "server" that takes the connection and says nothing: the worker waits there, not yet ready.
  const sockets = new Set<import('node:net').Socket>();
  let onConnection = () => {};
  const connected = new Promise<void>((resolve) => (onConnection = resolve));
  const silent = net.createServer((socket) => {
    sockets.add(socket);
    onConnection();
  });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  const { port } = silent.address() as import('node:net').AddressInfo;
  const child = spawn(process.execPath, [cli, 'worker', '--nats', `nats://127.0.0.1:${port}`, '--plugins', fixturePlugins.basic], { env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  let onSaid = () => {};
  const said = new Promise<void>((resolve) => (onSaid = resolve));
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => {
    output += chunk.toString();
    if (/^SIGTERM: /m.test(output)) onSaid();
  });
  const exited = new Promise<number | NodeJS.Signals | null>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal)));
  try {
    await connected;
    child.kill('SIGTERM');
    await Promise.race([said, exited]);
    // Its start ends now (the server went away).
    for (const socket of sockets) socket.destroy();
    silent.close();
    expect(await exited, output).toBe(0);
    expect(output).toMatch(/^SIGTERM: stopping before the worker has joined its pool \(nothing runs\)/m);
    expect(output).not.toMatch(/ready /);
  } finally {
    child.kill('SIGKILL');
    silent.close();
  }
});

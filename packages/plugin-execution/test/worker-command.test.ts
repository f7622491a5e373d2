import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BASIC, expectOk, fixturePlugins } from '@kb-labs/plugin-execution-conformance';
import { createExecutionBackend } from '@kb-labs/plugin-execution';
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
async function startCliWorker(args: string[]): Promise<{ child: ReturnType<typeof spawn>; exited: Promise<number | null>; output: () => string }> {
  const child = spawn(process.execPath, [cli, 'worker', '--nats', server.url, '--plugins', fixturePlugins.basic, ...args], {
    env: { PATH: process.env.PATH ?? '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
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

it('kb-plugin-exec worker serves a pool, and drains on SIGTERM: what runs finishes, then it exits 0', async () => {
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
    child.kill('SIGTERM');
    const result = await running;
    expectOk(result);
    expect(await exited, output()).toBe(0);
  } finally {
    child.kill('SIGKILL');
    await backend.shutdown({ timeoutMs: 1000 });
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

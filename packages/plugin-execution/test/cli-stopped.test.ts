/**
 * `run` on the in-process backend, its whole process stopped (SIGSTOP, Ctrl-Z, a container frozen)
 * and then resumed. The loop watchdog's thread stops with the process: a resumed process whose
 * loop turns is not ended as "blocked" (SIGKILL, 137), while a handler that does block it still is.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import net, { type AddressInfo, type Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor } from '@kb-labs/plugin-execution-conformance';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const here = path.dirname(fileURLToPath(import.meta.url));
const cli = path.resolve(here, '..', 'dist', 'cli.js');
const blocking = path.resolve(here, 'fixtures', 'plugins', 'blocking');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let root: string;

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'kb-cli-stopped-'));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

interface Run {
  stdout: () => string;
  stderr: () => string;
  /** Its exit code, or the signal that ended it. */
  ended: Promise<number | string | null>;
  /** SIGSTOP, and `ms` later SIGCONT. */
  stop: (ms: number) => Promise<void>;
}

function runCli(args: string[]): Run {
  const child = spawn(process.execPath, [cli, 'run', ...args], { env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const ended = new Promise<number | string | null>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal)));
  const stop = async (ms: number) => {
    child.kill('SIGSTOP');
    try {
      await sleep(ms);
    } finally {
      child.kill('SIGCONT');
    }
  };
  return { stdout: () => stdout, stderr: () => stderr, ended, stop };
}

describe('run, its process stopped and resumed (in-process)', () => {
  it('stopped past its time limit and the grace while its handler waits: the backend\'s own TIMEOUT (exit 1), its workspace removed, never ended as blocked', async () => {
    // Its handler waits for bytes on a socket, then holds the loop 3 s over them (within its time
    // limit and the watchdog's grace): stopped in the middle of that, with no beat since the
    // watching thread last looked. Before, that thread, resumed with the process, counted the
    // stopped time as the loop's own and ended the process: SIGKILL (137), "keeps the event loop
    // blocked past its time limit".
    const plugin = path.join(root, 'reads-socket');
    await mkdir(plugin);
    await writeFile(path.join(plugin, 'kb.plugin.json'), JSON.stringify({ id: '@cli-test/reads-socket', version: '1.0.0', handlers: { run: { entry: './run.mjs' } } }));
    await writeFile(
      path.join(plugin, 'run.mjs'),
      `import net from 'node:net';
export default (input, ctx) => new Promise(() => {
  const socket = net.connect(input.port, '127.0.0.1');
  // Held blocked (Atomics.wait, as a long synchronous task holds it), not spinning a core the test's other processes need.
  const cell = new Int32Array(new SharedArrayBuffer(4));
  socket.on('data', () => { for (let until = performance.now() + 3000, left = 3000; left > 0; left = until - performance.now()) Atomics.wait(cell, 0, 0, left); });
  ctx.signal.addEventListener('abort', () => socket.destroy());
});
`,
    );
    const sockets: Socket[] = [];
    const server = net.createServer((socket) => sockets.push(socket.on('error', () => {})));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const workspaces = await mkdtemp(path.join(root, 'ws-'));
    try {
      const { port } = server.address() as AddressInfo;
      const run = runCli([plugin, 'run', '--input', JSON.stringify({ port }), '--timeout', '3000', '--workspace-root', workspaces]);
      await waitFor(() => sockets.length === 1, 15_000);
      sockets[0]!.write('x');
      await sleep(1000);
      await run.stop(7000);
      expect(await run.ended, run.stderr()).toBe(1);
      expect(run.stderr()).toMatch(/^TIMEOUT: Handler "run" of plugin "@cli-test\/reads-socket" did not finish within 3000 ms$/m);
      expect(await readdir(workspaces)).toEqual([]);
    } finally {
      for (const socket of sockets) socket.destroy();
      server.close();
    }
  }, 40_000);

  it('a handler that blocks the loop is still ended once resumed: the stopped time is not counted, its own is', async () => {
    const marker = path.join(root, 'spinning');
    const run = runCli([blocking, 'spin', '--input', JSON.stringify({ marker, ms: 120_000 }), '--timeout', '300', '--no-workspace']);
    await waitFor(() => existsSync(marker), 15_000);
    await run.stop(3000);
    expect(await run.ended).toBe('SIGKILL');
    expect(run.stderr()).toMatch(/^TIMEOUT: Handler "spin" of plugin "@cli-test\/blocking" keeps the event loop blocked past its time limit of 300 ms/m);
  }, 30_000);
});

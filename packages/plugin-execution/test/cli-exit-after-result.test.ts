/**
 * `run` in-process: a handler that returned, leaving a timer that calls process.exit(0), while the
 * CLI still writes its result to a reader that has not taken it yet (a slow consumer of a pipe).
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const here = path.dirname(fileURLToPath(import.meta.url));
const cli = path.resolve(here, '..', 'dist', 'cli.js');
const blocking = path.resolve(here, 'fixtures', 'plugins', 'blocking');

it('a handler whose leftover timer calls process.exit(0) while its result is still being written: exit 1 and said, not exit 0 with the result cut short', async () => {
  const chars = 4 * 1024 * 1024;
  const args = [cli, 'run', blocking, 'exits-later', '--input', JSON.stringify({ chars, ms: 300 }), '--no-workspace'];
  const child = spawn(process.execPath, args, { env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  // stdout is not read until the command has ended: its result waits in the pipe when the timer fires.
  const code = await new Promise<number | null>((resolve) => child.once('exit', (exitCode) => resolve(exitCode)));
  let stdout = 0;
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.length));
  await new Promise((resolve) => child.stdout.once('close', resolve));
  // Before: exit code 0, nothing on stderr, and a JSON string cut at what the pipe had taken.
  expect(stdout).toBeLessThan(chars);
  expect(code, stderr).toBe(1);
  expect(stderr).toMatch(/^WORKER_CRASHED: handler "exits-later" of plugin "@cli-test\/blocking" was over, but a callback it left running in the CLI's process ended the CLI by process\.exit\(0\) before the command had written its result and ended: what was still to be written is lost/m);
}, 60_000);

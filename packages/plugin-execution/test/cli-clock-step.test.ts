import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor } from '@kb-labs/plugin-execution-conformance';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'cli.js');
const TEN_MINUTES = 10 * 60_000;
let root: string;

/**
 * A plugin whose handler writes `input.marker`, then blocks the event loop for `input.ms` on the
 * monotonic clock (a handler that reads the wall clock would see the step too), and returns.
 */
async function blockingPlugin(name: string): Promise<string> {
  const dir = path.join(root, name);
  await mkdir(dir);
  await writeFile(path.join(dir, 'kb.plugin.json'), JSON.stringify({ id: '@t/blocks', version: '1.0.0', handlers: { run: { entry: './run.mjs' } } }));
  await writeFile(
    path.join(dir, 'run.mjs'),
    "import { writeFileSync } from 'node:fs';\nexport default function run(input) {\n  writeFileSync(input.marker, 'blocking');\n  const until = performance.now() + input.ms;\n  while (performance.now() < until);\n  return 'done';\n}\n",
  );
  return dir;
}

/**
 * Runs the CLI with a `--require` preload that steps the process's wall clock (`Date.now`, in
 * every thread: Node runs preloads in worker threads too) by `offsetMs` once `step()` is called,
 * as an NTP step or a `date -s` would. The machine's clock is not touched.
 */
async function runCli(name: string, offsetMs: number, args: string[]) {
  const preload = path.join(root, `${name}-clock.cjs`);
  const stepped = path.join(root, `${name}-stepped`);
  await writeFile(
    preload,
    `const { existsSync } = require('node:fs');\nconst realNow = Date.now;\nlet stepped = false;\n` +
      `Date.now = () => (stepped ||= existsSync(${JSON.stringify(stepped)})) ? realNow() + ${offsetMs} : realNow();\n`,
  );
  const child = spawn(process.execPath, ['--require', preload, cli, ...args], { env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  return { child, exited, output: () => ({ stdout, stderr }), step: () => writeFile(stepped, '') };
}

describe('kb-plugin-exec run: the loop watchdog under a wall clock that steps', () => {
  beforeAll(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'kb-cli-clock-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('a clock stepped 10 minutes forward while a handler blocks the loop well within its limit does not end the run', async () => {
    const plugin = await blockingPlugin('forward-plugin');
    const marker = path.join(root, 'forward');
    const run = await runCli('forward', TEN_MINUTES, ['run', plugin, 'run', '--input', JSON.stringify({ marker, ms: 5000 }), '--timeout', '60000', '--no-workspace']);
    await waitFor(() => existsSync(marker), 15_000);
    // The watching thread has seen the loop stop turning: the step comes while it counts how long.
    await new Promise((resolve) => setTimeout(resolve, 400));
    await run.step();
    const { code, signal } = await run.exited;
    // Before, it took the step for 10 minutes of blocked loop: SIGKILL, "TIMEOUT: … keeps the event loop blocked past its time limit of 60000 ms".
    expect(signal, run.output().stderr).toBeNull();
    expect(code, run.output().stderr).toBe(0);
    expect(JSON.parse(run.output().stdout)).toBe('done');
  }, 60_000);

  it('a clock stepped 10 minutes back while a handler blocks the loop for good still ends it on time, with its durations as they were', async () => {
    const plugin = await blockingPlugin('back-plugin');
    const marker = path.join(root, 'back');
    const run = await runCli('back', -TEN_MINUTES, ['run', plugin, 'run', '--input', JSON.stringify({ marker, ms: 600_000 }), '--timeout', '300', '--no-workspace', '--json']);
    try {
      await waitFor(() => existsSync(marker), 15_000);
      await new Promise((resolve) => setTimeout(resolve, 400));
      await run.step();
      // 300 ms and the 2 s grace, with room for a loaded machine. Before, it waited for the 10 minutes the clock went back as well.
      const ended = await Promise.race([run.exited, new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 20_000))]);
      expect(ended?.signal, run.output().stderr).toBe('SIGKILL');
    } finally {
      run.child.kill('SIGKILL');
    }
    const { stdout, stderr } = run.output();
    expect(stderr).toMatch(/^TIMEOUT: Handler "run" of plugin "@t\/blocks" keeps the event loop blocked past its time limit of 300 ms/m);
    const { meta } = JSON.parse(stdout);
    expect(meta.runMs).toBeGreaterThanOrEqual(300 + 2000);
    expect(meta.runMs).toBeLessThan(60_000);
    expect(meta.queueWaitMs).toBeGreaterThanOrEqual(0);
    expect(meta.durationMs).toBe(meta.queueWaitMs + meta.runMs);
  }, 60_000);
});

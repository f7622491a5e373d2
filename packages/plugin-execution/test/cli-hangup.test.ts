/**
 * `run` ended by SIGHUP (its terminal closed) ends by that signal, as a shell reports it (129),
 * whatever else in its process listens for SIGHUP: a --platform module's logger that reopens its
 * files on SIGHUP kept it alive, the signal it sends itself caught.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fixturePlugins, waitFor } from '@kb-labs/plugin-execution-conformance';
import { afterAll, beforeAll, expect, it } from 'vitest';

const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'cli.js');
let root: string;

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'kb-cli-hangup-'));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

it('SIGHUP ends run by SIGHUP, its workspace removed, though a --platform module listens for SIGHUP too', async () => {
  const platform = path.join(root, 'platform.mjs');
  await writeFile(platform, "process.on('SIGHUP', () => {});\nexport const platform = {};\n");
  const workspaces = path.join(root, 'workspaces');
  const args = ['run', fixturePlugins.basic, 'respects-signal', '--platform', platform, '--workspace-root', workspaces];
  const child = spawn(process.execPath, [cli, ...args], { env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const ended = new Promise<number | string | null>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal)));
  try {
    // Once its workspace exists, the execution is running.
    await waitFor(async () => (await readdir(workspaces).catch(() => [])).some((name) => name.startsWith('kbx-')), 15_000);
    child.kill('SIGHUP');
    // Not hung: a generous bound, the kill below only cleans up a failed run.
    const end = await Promise.race([ended, new Promise((resolve) => setTimeout(resolve, 15_000, 'still running'))]);
    expect(end, stderr).toBe('SIGHUP');
    expect(stderr).toMatch(/ABORTED: /);
    expect(await readdir(workspaces)).toEqual([]);
  } finally {
    child.kill('SIGKILL');
  }
});

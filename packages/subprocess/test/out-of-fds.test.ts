/**
 * A host out of file descriptors: a child's spawn fails before its pipes are made (EMFILE), which
 * Node reports with an 'error' event on the next tick. That execution is WORKER_CRASHED
 * (start-failed) saying so, and the host lives on and serves once descriptors are back.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fixturePlugins } from '@kb-labs/plugin-execution-conformance';
import { afterAll, beforeAll, expect, it } from 'vitest';

let root: string;

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'kb-out-of-fds-'));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const host = path.join(import.meta.dirname, 'fixtures', 'out-of-fds-host.mjs');

it.each([
  ['no sandbox', 'off', 0],
  ['no sandbox, a spare to refill', 'off', 1],
  ['the sandbox', 'required', 0],
])('a spawn that finds no file descriptor left (%s) fails its execution WORKER_CRASHED start-failed, naming the limit; the host lives on', async (_, sandbox, prespawn) => {
  const ws = await mkdtemp(path.join(root, 'ws-'));
  const ran = spawnSync('prlimit', ['--nofile=128:128', process.execPath, host, JSON.stringify({ plugin: fixturePlugins.basic, root: ws, sandbox, prespawn })], {
    env: { PATH: process.env.PATH ?? '' },
    encoding: 'utf8',
    timeout: 60_000,
  });
  expect(ran.status, ran.stderr).toBe(0);
  const said = Object.assign({}, ...ran.stdout.trim().split('\n').map((line) => JSON.parse(line) as object));
  expect(said.warm).toEqual({ ok: 'warm' });
  if (prespawn) {
    // The spare, booted before, served it (its refill failed, in the background) or, on a loaded
    // machine, was not ready yet and a cold start failed.
    if (!('ok' in said.starved)) expect(said.starved).toMatchObject({ code: 'WORKER_CRASHED', reason: 'start-failed' });
  } else {
    expect(said.starved).toMatchObject({ code: 'WORKER_CRASHED', reason: 'start-failed' });
    expect(said.starved.message).toMatch(/no file descriptors left .*EMFILE or ENFILE.*ulimit -n/);
  }
  expect(said.again).toEqual({ ok: 'again' });
  if (!prespawn) expect(said.startFailed).toBeGreaterThanOrEqual(1);
  expect(said.done).toBe(true);
  expect(await readdir(ws)).toEqual([]);
});

it.each(['auto', 'required'])(
  "a sandbox probe that finds no file descriptor left (sandbox '%s') is a passing shortage: nothing runs unsandboxed, and once descriptors are back the next execution probes again and runs sandboxed",
  async (sandbox) => {
    const ws = await mkdtemp(path.join(root, 'ws-'));
    // No warm-up: the starved execution is the first, the one that probes the sandbox.
    const ran = spawnSync('prlimit', ['--nofile=128:128', process.execPath, host, JSON.stringify({ plugin: fixturePlugins.basic, root: ws, sandbox, prespawn: 0, warm: false })], {
      env: { PATH: process.env.PATH ?? '' },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(ran.status, ran.stderr).toBe(0);
    const said = Object.assign({}, ...ran.stdout.trim().split('\n').map((line) => JSON.parse(line) as object));
    expect(said.starved).toMatchObject({ code: 'WORKER_CRASHED', reason: 'sandbox' });
    expect(said.starved.message).toContain('a passing shortage');
    // Before: the probe's EMFILE settled the sandbox as unavailable for good: under 'auto' every
    // later child ran without it (as root, on a root host), under 'required' every one failed.
    expect(said.again).toEqual({ ok: 'again' });
    expect(said.isolation).toBe('bubblewrap');
    expect(said.done).toBe(true);
  },
);

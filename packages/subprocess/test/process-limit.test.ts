/**
 * A host whose new processes the system refuses (a cgroup's pids.max reached: the spawn fails with
 * EAGAIN, no process made): the execution is WORKER_CRASHED saying the system refused the process
 * and why — sandboxed, that bubblewrap could not be started, not that it failed to set up the
 * sandbox; or, bubblewrap started but its sandbox's init could not fork, what bubblewrap said, as a
 * sandbox that could not be set up (reason sandbox) —; health() says children fail to start until
 * one does, and the host serves again once the limit is lifted, nothing left in its workspace root.
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { canLimitPids, fixturePlugins, runInPidsCgroup } from '@kb-labs/plugin-execution-conformance';
import { afterAll, beforeAll, expect, it } from 'vitest';

let root: string;

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'kb-process-limit-'));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const host = path.join(import.meta.dirname, 'fixtures', 'process-limit-host.mjs');

it.runIf(canLimitPids).each([
  ['no sandbox', 'off', undefined, 'start-failed', /did not start: spawn \S+ EAGAIN \(the system refused a new process: .*pids\.max\)/],
  ['the sandbox', 'required', undefined, 'sandbox', /did not start: bubblewrap could not be started: spawn \S+ EAGAIN \(the system refused a new process: .*pids\.max\)/],
  // bubblewrap starts and makes the sandbox's init, which cannot fork Node: it exits 1 saying so, after it named the init.
  ['the sandbox, its init unable to fork', 'required', 2, 'sandbox', /did not start: bubblewrap could not set up the sandbox: Can't fork for pid 1: Resource temporarily unavailable \(the system refused a new process: .*pids\.max\)/],
])('a child the system refuses to make (%s) fails its execution naming the refusal and what it means, and health() says children fail to start; the host serves again once the limit is lifted', async (_, sandbox, headroom, reason, message) => {
  const ws = await mkdtemp(path.join(root, 'ws-'));
  const ran = runInPidsCgroup(host, JSON.stringify({ plugin: fixturePlugins.basic, root: ws, sandbox, headroom }));
  expect(ran.status, ran.stderr).toBe(0);
  const said = Object.assign({}, ...ran.stdout.trim().split('\n').map((line) => JSON.parse(line) as object));
  expect(said.warm).toEqual({ ok: 'warm' });
  expect(said.refused).toMatchObject({ code: 'WORKER_CRASHED', reason });
  expect(said.refused.message).toMatch(message);
  expect(said.problems.join('\n')).toContain('child processes fail to start (the last one did): ');
  expect(said.problems.join('\n')).toMatch(message);
  expect(said.again).toEqual({ ok: 'again' });
  expect(said.problemsAfter).toEqual([]);
  expect(said.isolation).toBe(sandbox === 'off' ? 'process' : 'bubblewrap');
  expect(said.done).toBe(true);
  expect(await readdir(ws)).toEqual([]);
});

/**
 * Spares switched off by a passing shortage (a cgroup's pids.max reached: every refill refused)
 * come back once children start again: prespawning is not off for the rest of the host's life,
 * nor health() not ok.
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { canLimitPids, fixturePlugins, runInPidsCgroup } from '@kb-labs/plugin-execution-conformance';
import { afterAll, beforeAll, expect, it } from 'vitest';

let root: string;

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'kb-spares-limit-'));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const host = path.join(import.meta.dirname, 'fixtures', 'spares-limit-host.mjs');

it.runIf(canLimitPids)('spares switched off while the system refused new processes are tried again once a child starts, and serve again; health() is ok again', async () => {
  const ws = await mkdtemp(path.join(root, 'ws-'));
  const ran = runInPidsCgroup(host, JSON.stringify({ plugin: fixturePlugins.basic, root: ws, retryAfterMs: 5_000 }), 90_000);
  expect(ran.status, ran.stderr).toBe(0);
  const said = Object.assign({}, ...ran.stdout.trim().split('\n').map((line) => JSON.parse(line) as object));
  expect(said.warm).toEqual({ ok: 'warm' });
  expect(said.switchedOff).toEqual([expect.stringMatching(/^prespawn switched off/)]);
  // A child that cannot start is start-failed; the spare, started before the cap, may run its
  // execution (Node 20) or, on Node 22 and 24, which start a thread of the child's as it runs one,
  // be aborted by Node when the system refuses that thread (SIGABRT, reason "signal").
  const [first, ...rest] = said.starved;
  if (!('ok' in first)) expect(first).toMatchObject({ code: 'WORKER_CRASHED', reason: expect.stringMatching(/^(start-failed|signal)$/) });
  for (const outcome of rest) if (!('ok' in outcome)) expect(outcome).toMatchObject({ code: 'WORKER_CRASHED', reason: 'start-failed' });
  expect(said.cold).toEqual({ ok: 'cold' });
  expect(said.after).toEqual([0, 1, 2, 3].map((i) => ({ ok: `after-${i}` })));
  expect(said.servedBySpares).toBeGreaterThanOrEqual(2);
  expect(said.problemsAfter).toEqual([]);
  expect(said.done).toBe(true);
  expect(await readdir(ws)).toEqual([]);
});

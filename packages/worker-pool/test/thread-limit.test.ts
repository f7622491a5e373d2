/**
 * A host whose threads the system refuses (a cgroup's pids.max reached, Node's "EAGAIN"): a pool
 * made then cannot start and says why, executions of a running pool fail at once saying why, and
 * the pool serves again once the limit is lifted.
 */
import path from 'node:path';
import { canLimitPids, fixturePlugins, runInPidsCgroup } from '@kb-labs/plugin-execution-conformance';
import { expect, it } from 'vitest';

const host = path.join(import.meta.dirname, 'fixtures', 'thread-limit-host.mjs');

it.runIf(canLimitPids)('threads the system refuses: the backend made then says the system refused them, not that its options are wrong; executions fail at once naming the limit; the pool serves again once it is lifted', () => {
  const ran = runInPidsCgroup(host, JSON.stringify({ plugin: fixturePlugins.basic }));
  expect(ran.status, ran.stderr).toBe(0);
  const said = Object.assign({}, ...ran.stdout.trim().split('\n').map((line) => JSON.parse(line) as object));
  expect(said.warm).toEqual({ ok: true });
  expect(said.made.code).toBe('VALIDATION_ERROR');
  expect(said.made.message).toMatch(/EAGAIN \(the system refused a new thread: too many threads or processes/);
  expect(said.made.message).not.toMatch(/Invalid worker-pool backend options/);
  // The thread the pool had runs one; each of the others needed a thread the system refused.
  const refused = said.refused.filter((outcome: { ok?: boolean }) => !outcome.ok);
  expect(refused.length).toBeGreaterThanOrEqual(3);
  for (const failure of refused) {
    expect(failure).toMatchObject({ code: 'WORKER_CRASHED', reason: 'start-failed' });
    expect(failure.message).toMatch(/EAGAIN \(the system refused a new thread: .*pids\.max/);
  }
  expect(said.problems.join('\n')).toMatch(/worker threads fail to start/);
  expect(said.again).toEqual([{ ok: true }, { ok: true }, { ok: true }, { ok: true }]);
  expect(said.problemsAfter).toEqual([]);
  expect(said.done).toBe(true);
});

/**
 * A host out of file descriptors: threads the system cannot start (EMFILE) fail the execution
 * each was for, WORKER_CRASHED start-failed saying what the code means; the host serves on.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fixturePlugins } from '@kb-labs/plugin-execution-conformance';
import { expect, it } from 'vitest';

it('a thread the system cannot start for want of file descriptors fails its execution naming the limit; the host serves on', () => {
  const host = path.join(import.meta.dirname, 'fixtures', 'out-of-fds-host.mjs');
  const ran = spawnSync('prlimit', ['--nofile=64:64', process.execPath, host, JSON.stringify({ plugin: fixturePlugins.basic })], {
    env: { PATH: process.env.PATH ?? '' },
    encoding: 'utf8',
    timeout: 60_000,
  });
  expect(ran.status, ran.stderr).toBe(0);
  const said = Object.assign({}, ...ran.stdout.trim().split('\n').map((line) => JSON.parse(line) as object));
  // 40 threads need more descriptors than 64: most cannot start. One that started may find none
  // left to open its handler's module (HANDLER_ERROR, EMFILE): the module is the handler's to load.
  const refused = said.failed.filter((failure: { code: string }) => failure.code === 'WORKER_CRASHED');
  expect(refused.length).toBeGreaterThan(0);
  for (const failure of refused) {
    expect(failure).toMatchObject({ code: 'WORKER_CRASHED', reason: 'start-failed' });
    expect(failure.message).toMatch(/EMFILE.* \(the host is out of file descriptors: raise its open-file limit/);
  }
  for (const failure of said.failed.filter((f: { code: string }) => f.code !== 'WORKER_CRASHED')) expect(failure).toMatchObject({ code: 'HANDLER_ERROR', message: expect.stringContaining('EMFILE') });
  expect(said.again).toBe(true);
  expect(said.done).toBe(true);
});

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
  // 40 threads need more descriptors than 64: most cannot start, and say why. Out of descriptors,
  // what did start may fail in other ways, each its execution's alone: Node's own loader may find
  // no descriptor to read a module's package.json (start-failed, "Cannot find module"), or the
  // handler's module may not open (HANDLER_ERROR, EMFILE).
  expect(said.failed.some((failure: { message: string }) => /EMFILE.* \(the host is out of file descriptors: raise its open-file limit/.test(failure.message))).toBe(true);
  for (const failure of said.failed) expect(['WORKER_CRASHED', 'HANDLER_ERROR']).toContain(failure.code);
  expect(said.again).toBe(true);
  expect(said.done).toBe(true);
});

/**
 * The host out of file descriptors for a moment (a handler took them all): the execution still
 * settles as a result, and its slot goes back. Run in a child process with a low `ulimit -n`.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = mkdtempSync(path.join(os.tmpdir(), 'kb-in-process-fds-'));

afterAll(() => rmSync(root, { recursive: true, force: true }));

it('an execution whose workspace cannot be listed for want of descriptors (EMFILE) resolves, and the next one runs: the slot went back', () => {
  const script = `ulimit -n 128 && exec "$0" "$@"`;
  const child = spawnSync('bash', ['-c', script, process.execPath, path.join(here, 'fixtures', 'descriptors-host.mjs'), path.join(here, 'fixtures', 'lifetime-plugin'), root], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH ?? '' },
    timeout: 30_000,
  });
  expect(child.status, child.stderr).toBe(0);
  // Before: execute() rejected with EMFILE from the artifact listing, its slot was never given
  // back, and the next execution waited in the queue for ever.
  expect(JSON.parse(child.stdout.trim().split('\n').at(-1)!)).toEqual({ first: { ok: true }, second: { ok: true }, active: 0, queued: 0 });
});

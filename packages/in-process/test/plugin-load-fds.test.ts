/**
 * The host out of file descriptors when the backend first reads its plugins' manifests (its first
 * execution): a passing shortage, not the plugin's fault. Once descriptors are back, the next
 * execution reads the manifest again and runs; the same for the import of a handler's module.
 * Run in a child process with a low open-file limit.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const here = path.dirname(fileURLToPath(import.meta.url));

const runHost = (mode?: string) =>
  spawnSync('prlimit', ['--nofile=128:128', process.execPath, path.join(here, 'fixtures', 'plugin-load-fds-host.mjs'), path.join(here, 'fixtures', 'lifetime-plugin'), ...(mode ? [mode] : [])], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH ?? '' },
    timeout: 30_000,
  });

it('a handler whose module could not be imported for want of descriptors (EMFILE) is imported again at the next execution once they are back', () => {
  const child = runHost('loaded');
  expect(child.status, child.stderr).toBe(0);
  const said = JSON.parse(child.stdout.trim().split('\n').at(-1)!);
  expect(said.starved).toMatchObject({ code: 'HANDLER_ERROR' });
  expect(said.starved.message).toContain('EMFILE');
  // Before: Node keeps a failed import's outcome for its URL, and the entry had not changed, so
  // it was not imported again under another: every later execution failed with the same EMFILE.
  expect(said.again).toEqual({ ok: true });
  expect(said.health).toEqual({ ok: true, problems: [] });
});

it('a plugin whose manifest could not be read for want of descriptors (EMFILE) loads at the next execution once they are back; health() is ok again', () => {
  const child = runHost();
  expect(child.status, child.stderr).toBe(0);
  const said = JSON.parse(child.stdout.trim().split('\n').at(-1)!);
  expect(said.starved.code).not.toBeUndefined();
  expect(said.starved.message).toContain('EMFILE');
  expect(said.starvedHealth).toBe(false);
  // Before: the EMFILE was kept as the plugin's load failure for good: every later execution of
  // it failed HANDLER_NOT_FOUND naming EMFILE, and health() was never ok again.
  expect(said.again).toEqual({ ok: true });
  expect(said.health).toEqual({ ok: true, problems: [] });
});

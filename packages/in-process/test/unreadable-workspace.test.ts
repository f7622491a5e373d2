/**
 * A handler that makes its own workspace unreadable (mode 000) leaves files there the host cannot
 * list: the listing says it is not whole (`artifactsTruncated`), as it does for a folder inside
 * that it cannot read. Before, the host got an empty list said to be whole. Run in a child process
 * as a user other than root (root reads any folder).
 */
import { spawnSync } from 'node:child_process';
import { accessSync, chownSync, constants, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';

const here = path.dirname(fileURLToPath(import.meta.url));
const isRoot = process.getuid?.() === 0;
const base = mkdtempSync(path.join(os.tmpdir(), 'kb-in-process-unreadable-'));

afterAll(() => rmSync(base, { recursive: true, force: true }));

/** Whether every folder down to `dir` lets others in, and `dir` lets them read (where the unprivileged child loads the package from). */
function openToOthers(dir: string): boolean {
  try {
    for (let at = dir; at !== path.dirname(at); at = path.dirname(at)) accessSync(at, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

it.runIf(process.platform === 'linux' && (!isRoot || openToOthers(path.resolve(here, '..'))))('a workspace its handler made unreadable is said not listed whole, and is removed', () => {
  // As root, the host runs as nobody: root's reads pass any mode.
  if (isRoot) chownSync(base, 65534, 65534);
  const root = path.join(base, 'root');
  const child = spawnSync(process.execPath, [path.join(here, 'fixtures', 'unreadable-workspace-host.mjs'), path.join(here, 'fixtures', 'lifetime-plugin'), root], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH ?? '' },
    timeout: 30_000,
    ...(isRoot ? { uid: 65534, gid: 65534 } : {}),
  });
  expect(child.status, child.stderr.slice(0, 2000)).toBe(0);
  expect(JSON.parse(child.stdout.trim().split('\n').at(-1)!)).toEqual({ ok: true, artifacts: [], truncated: true, left: [] });
});

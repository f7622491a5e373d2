/**
 * A workspace that could not be removed for a passing reason (its file system remounted
 * read-only for a moment; the process out of descriptors for longer than removeTree waits) is
 * left behind: health() says so. Once the condition is over, it must not stay said for good.
 * Root only (Linux): a tmpfs of its own, remounted read-only and back.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { WorkspaceManager } from '../src/index.js';
import { afterAll, beforeAll, expect, it } from 'vitest';

const canMount = process.platform === 'linux' && process.getuid?.() === 0;
let mnt: string;

beforeAll(async () => {
  if (!canMount) return;
  mnt = await mkdtemp(path.join(os.tmpdir(), 'kb-left-behind-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mnt]);
});

afterAll(async () => {
  if (!canMount) return;
  execFileSync('umount', [mnt]);
  await rm(mnt, { recursive: true, force: true });
});

const remount = (mode: 'ro' | 'rw') => execFileSync('mount', ['-o', `remount,${mode}`, mnt]);

async function leftOne(manager: WorkspaceManager, id: string): Promise<string> {
  const lease = await manager.acquire(id);
  await writeFile(path.join(lease.dir, 'out.txt'), 'x');
  remount('ro');
  try {
    await expect(lease.release()).rejects.toThrow(/EROFS/);
  } finally {
    remount('rw');
  }
  expect(manager.leftBehind()).toMatch(/^1 workspace directory .* could not be removed/);
  return lease.dir;
}

it.runIf(canMount)('a workspace left behind by a read-only moment is removed when the next one is made, and is no longer said to be left behind', async () => {
  const manager = new WorkspaceManager({ root: path.join(mnt, 'retried') });
  await leftOne(manager, 'exec-1');
  // Before: said for the rest of the process (health() never ok again), and never removed by it.
  const next = await manager.acquire('exec-2');
  for (let i = 0; i < 50 && manager.leftBehind() !== undefined; i++) await new Promise((resolve) => setTimeout(resolve, 20));
  expect(manager.leftBehind()).toBeUndefined();
  await next.release();
  expect(await readdir(manager.root)).toEqual([]);
});

it.runIf(canMount)('a workspace left behind that a sweep() removed is no longer said to be left behind', async () => {
  const manager = new WorkspaceManager({ root: path.join(mnt, 'swept') });
  const dir = await leftOne(manager, 'exec-1');
  expect((await manager.sweep()).removed).toEqual([dir]);
  expect(manager.leftBehind()).toBeUndefined();
});

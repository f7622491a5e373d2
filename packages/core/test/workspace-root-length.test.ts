/**
 * The length check of a workspace root at its edge (Linux, 4,095 bytes in a path): the longest
 * root taken holds a workspace (a uuid execution id, a file in it), and one byte more is refused,
 * in rootProblem() (health) and at acquire(), before anything is made.
 */
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { WorkspaceError, WorkspaceManager } from '../src/index.js';
import { describe, expect, it } from 'vitest';

/** What a workspace may add to its root's path (workspace-manager.ts: the lease's name and a file in it). */
const LEASE_PATH_BYTES = 110;
const LONGEST_ROOT = 4095 - LEASE_PATH_BYTES;

/** A root path under `base` exactly `bytes` long, in folders of 250 bytes. */
function rootOfLength(base: string, bytes: number): string {
  let root = base;
  while (Buffer.byteLength(root) < bytes - 251) root = path.join(root, 'd'.repeat(250));
  return path.join(root, 'e'.repeat(bytes - 1 - Buffer.byteLength(root)));
}

describe.runIf(process.platform === 'linux')('a workspace root at the longest path a workspace fits under', () => {
  it(`${LONGEST_ROOT} bytes is taken and holds a workspace with a file; ${LONGEST_ROOT + 1} bytes is refused saying its length, and not made`, async () => {
    const base = await mkdtemp(path.join(os.tmpdir(), 'kb-root-edge-'));
    try {
      const longest = new WorkspaceManager({ root: rootOfLength(path.join(base, 'taken'), LONGEST_ROOT) });
      expect(Buffer.byteLength(longest.root)).toBe(LONGEST_ROOT);
      expect(await longest.rootProblem()).toBeUndefined();
      const lease = await longest.acquire('550e8400-e29b-41d4-a716-446655440000');
      await writeFile(path.join(lease.dir, 'report.json'), '{}');
      await lease.release();
      expect(await longest.sweep()).toEqual({ removed: [], failed: [], foreign: [], kept: [] });

      const tooLong = new WorkspaceManager({ root: rootOfLength(path.join(base, 'refused'), LONGEST_ROOT + 1) });
      expect(await tooLong.rootProblem()).toContain(`its path is ${LONGEST_ROOT + 1} bytes long: a workspace under it (about ${LEASE_PATH_BYTES} bytes more) would pass the 4095 bytes`);
      const error = await tooLong.acquire('x').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(WorkspaceError);
      expect((error as WorkspaceError).details).toMatchObject({ root: tooLong.root, code: 'ENAMETOOLONG' });
      await expect(stat(path.join(base, 'refused'))).rejects.toMatchObject({ code: 'ENOENT' });
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  });
});

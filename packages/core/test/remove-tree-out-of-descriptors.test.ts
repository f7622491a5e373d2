/**
 * A workspace removal that finds the process out of descriptors (EMFILE) tries again a few times
 * over about two seconds (host/remove-tree.ts): descriptors back within that, the directory goes;
 * out of them for longer, the removal gives up, and the directory is said to be left behind.
 * Real processes with a low descriptor limit of their own (the shell's ulimit).
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';

let base: string;

beforeAll(async () => {
  base = await mkdtemp(path.join(os.tmpdir(), 'kb-remove-emfile-'));
});

afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

/** Release a workspace with the process out of descriptors, given back after `backAfterMs` (or once the release settles): what it came to. */
function releaseOutOfDescriptors(name: string, backAfterMs: number | undefined): { report: unknown; stderr: string } {
  const entry = new URL('../dist/index.js', import.meta.url).href;
  const script = `
    const { WorkspaceManager } = await import(${JSON.stringify(entry)});
    const fs = await import('node:fs');
    const manager = new WorkspaceManager({ root: ${JSON.stringify(path.join(base, name))} });
    const lease = await manager.acquire('emfile');
    fs.writeFileSync(lease.dir + '/f.txt', 'x');
    const held = [];
    try { for (;;) held.push(fs.openSync('/dev/null', 'r')); } catch (error) { if (error.code !== 'EMFILE') throw error; }
    const giveBack = () => held.splice(0).forEach((fd) => fs.closeSync(fd));
    if (${backAfterMs !== undefined}) setTimeout(giveBack, ${backAfterMs ?? 0});
    let failed = null;
    await lease.release().catch((error) => (failed = error.details?.code ?? error.code ?? error.message));
    giveBack();
    process.stdout.write(JSON.stringify({ failed, left: fs.existsSync(lease.dir), leftBehind: manager.leftBehind() ?? null }));
  `;
  // A bound only so that a removal retrying for good fails the test rather than hanging it.
  const run = spawnSync('/bin/sh', ['-c', 'ulimit -n 128 && exec "$0" --input-type=module -e "$1"', process.execPath, script], { encoding: 'utf8', env: {}, timeout: 15_000 });
  return { report: JSON.parse(run.stdout), stderr: run.stderr };
}

it('descriptors back a second later (within the retries): the directory goes, nothing is said left behind', () => {
  expect(releaseOutOfDescriptors('back', 1000)).toEqual({ report: { failed: null, left: false, leftBehind: null }, stderr: '' });
});

it('out of descriptors for longer than the retries: the removal gives up with EMFILE, and the directory is said to be left behind', () => {
  const { report, stderr } = releaseOutOfDescriptors('for-good', undefined);
  expect(report).toEqual({ failed: 'EMFILE', left: true, leftBehind: expect.stringMatching(/^1 workspace directory /) });
  expect(stderr).toMatch(/\[KB_PLUGIN_WORKSPACE_LEFT\] Warning: A workspace directory could not be removed: .*EMFILE/);
});

/**
 * A plugin that leaves a folder of 120,000 files in its workspace: the host lists its artifacts
 * (at most 1000, from at most 10,000 entries) and removes it reading a few names at a time. Before,
 * each read the whole folder into one array (120,000 Buffers made in one turn of the event loop,
 * which that held for a second and more): a host with a small heap (--max-old-space-size=24) ran
 * out of memory there. Run in a child process with that heap.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = mkdtempSync(path.join(os.tmpdir(), 'kb-in-process-many-'));

afterAll(() => rmSync(root, { recursive: true, force: true }));

it.runIf(process.platform === 'linux')('lists and removes a workspace folder of 120,000 files in the memory of what it lists, not of the folder', () => {
  const child = spawnSync(process.execPath, ['--max-old-space-size=24', path.join(here, 'fixtures', 'many-files-host.mjs'), path.join(here, 'fixtures', 'lifetime-plugin'), root], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH ?? '' },
    timeout: 300_000,
  });
  expect(child.status, child.stderr.slice(0, 2000)).toBe(0);
  expect(JSON.parse(child.stdout.trim().split('\n').at(-1)!), child.stdout).toEqual({ ok: true, artifacts: 1000, truncated: true, left: [], active: 0 });
}, 310_000);

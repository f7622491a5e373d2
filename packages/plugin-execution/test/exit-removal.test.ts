import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { removeLiveWorkspaces } from '../src/exit-guard.js';

let base: string;
let counter = 0;
const children: ChildProcess[] = [];

beforeAll(async () => {
  base = await mkdtemp(path.join(os.tmpdir(), 'kb-exit-removal-'));
});

afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
  }
});

afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

// The process ends right after, with no turn of the event loop: the removal is synchronous, and a
// handler still running (a worker-pool thread, a sandboxed child) may swap a folder for a link
// between the removal's look at a name and its use of it.
it.runIf(process.platform === 'linux')("a worker's last removal of live workspaces (third signal, exit guard), with what runs them still swapping their folders for links to outside, never deletes outside files, even of the names it lists", async () => {
  const outside = path.join(base, 'outside');
  await mkdir(outside);
  for (let i = 0; i < 50; i++) await writeFile(path.join(outside, `f${i}`), 'keep');
  // Each d<i> is a folder (holding the names `outside` holds) or a link to `outside` by turns, as fast as a process can; said once it runs.
  const racer = `
    const fs = require('node:fs');
    const [dir, outside] = process.argv.slice(1);
    process.chdir(dir);
    for (let k = 1; ; k++) {
      for (let i = 0; i < 4; i++) {
        try { fs.renameSync('d' + i, 't' + i); } catch {}
        try { fs.symlinkSync(outside, 'd' + i); } catch {}
        try { fs.unlinkSync('d' + i); } catch {}
        try { fs.renameSync('t' + i, 'd' + i); } catch {}
      }
      if (k === 100) process.stdout.write('go');
    }
  `;
  for (let round = 0; round < 8; round++) {
    const dir = path.join(base, `raced-${counter++}`);
    for (let i = 0; i < 4; i++) {
      await mkdir(path.join(dir, `d${i}`), { recursive: true });
      for (let j = 0; j < 50; j++) await writeFile(path.join(dir, `d${i}`, `f${j}`), 'x');
    }
    const child = spawn(process.execPath, ['-e', racer, dir, outside], { stdio: ['ignore', 'pipe', 'ignore'], env: {} });
    children.push(child);
    await once(child.stdout!, 'data');
    removeLiveWorkspaces([dir]);
    child.kill('SIGKILL');
    await once(child, 'exit');
    // What the racer renamed back in after the removal emptied the folder, a second call takes.
    removeLiveWorkspaces([dir]);
    expect(existsSync(dir)).toBe(false);
    expect((await readdir(outside)).length).toBe(50);
  }
}, 120_000);

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile, chmod } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { removeTree } from '../src/host/remove-tree.js';
import { removeTreeSync } from '../src/host-kit.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

let base: string;
let counter = 0;

beforeAll(async () => {
  base = await mkdtemp(path.join(os.tmpdir(), 'kb-core-rm-sync-'));
});

afterAll(async () => {
  await removeTree(base);
});

/** A folder outside the tree removed, with `count` files the removal must never touch. */
async function victim(count: number): Promise<string> {
  const outside = path.join(base, `victim-${counter++}`);
  await mkdir(outside);
  for (let i = 0; i < count; i++) await writeFile(path.join(outside, `f${i}`), 'keep');
  return outside;
}

describe('removeTreeSync', () => {
  it('removes a read-only nested tree and its links, never following a link out; a file in its place, and a path that is not there, are fine', async () => {
    const outside = await victim(3);
    const dir = path.join(base, `tree-${counter++}`);
    await mkdir(path.join(dir, 'a', 'b'), { recursive: true });
    await writeFile(path.join(dir, 'a', 'b', 'f'), 'x');
    await symlink(outside, path.join(dir, 'a', 'out'));
    await symlink(path.join(outside, 'f0'), path.join(dir, 'file-out'));
    await chmod(path.join(dir, 'a', 'b'), 0o500);
    await chmod(path.join(dir, 'a'), 0o000);
    removeTreeSync(dir);
    expect(existsSync(dir)).toBe(false);
    expect((await readdir(outside)).sort()).toEqual(['f0', 'f1', 'f2']);
    expect(await readFile(path.join(outside, 'f0'), 'utf8')).toBe('keep');
    const file = path.join(base, `file-${counter++}`);
    await writeFile(file, 'x');
    removeTreeSync(file);
    expect(existsSync(file)).toBe(false);
    expect(() => removeTreeSync(path.join(base, 'never-made'))).not.toThrow();
  });

  it('removes a tree deeper than an absolute path can name (mkdir + chdir in a loop)', async () => {
    const dir = path.join(base, `deep-${counter++}`);
    await mkdir(dir);
    const script = `
      const fs = require('node:fs');
      process.chdir(process.argv[1]);
      for (let i = 0; i < 100; i++) { fs.mkdirSync('d'.repeat(100)); fs.writeFileSync('f', 'x'); process.chdir('d'.repeat(100)); }
    `;
    const child = spawn(process.execPath, ['-e', script, dir], { stdio: 'ignore', env: {} });
    expect((await once(child, 'exit'))[0]).toBe(0);
    await expect(rm(dir, { recursive: true, force: true })).rejects.toMatchObject({ code: 'ENAMETOOLONG' });
    removeTreeSync(dir);
    expect(existsSync(dir)).toBe(false);
  });
});

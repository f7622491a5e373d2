import { mkdtemp, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { notModuleFile } from '../src/module-file.js';

describe('notModuleFile()', () => {
  const made: string[] = [];
  afterEach(async () => {
    await Promise.all(made.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
  });
  const scratch = async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'kb-module-file-'));
    made.push(dir);
    return dir;
  };

  it('takes a regular file up to 2 GiB less one byte and one that does not exist; refuses one a byte larger, naming its size', async () => {
    const file = path.join(await scratch(), 'big.mjs');
    await writeFile(file, '');
    // Sparse: no disk space taken.
    await truncate(file, 2 ** 31 - 1);
    expect(notModuleFile('./big.mjs', await stat(file))).toBeUndefined();
    await truncate(file, 2 ** 31);
    expect(notModuleFile('./big.mjs', await stat(file))).toBe(`./big.mjs is ${2 ** 31} bytes, more than Node reads into a module (2 GiB)`);
    expect(notModuleFile('./gone.mjs', undefined)).toBeUndefined();
  });

  it('names a folder (with the file to name in it), a device and a socket', async () => {
    const dir = await scratch();
    expect(notModuleFile('./lib/', await stat(dir))).toBe('./lib/ is a folder; name the module file in it (./lib/index.js, say)');
    expect(notModuleFile('lib', await stat(dir))).toBe('lib is a folder; name the module file in it (./lib/index.js, say)');
    expect(notModuleFile('./null.mjs', await stat('/dev/null'))).toBe('./null.mjs is a device, not a module file (a handler\'s entry must be a regular file)');
    const socketPath = path.join(dir, 'entry.sock');
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    try {
      expect(notModuleFile('./entry.sock', await stat(socketPath))).toBe('./entry.sock is a socket, not a module file (a handler\'s entry must be a regular file)');
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

import { mkdir, mkdtemp, realpath, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dependencyFolders } from '../src/host/runtime-paths.js';

let scratch: string;

describe('dependencyFolders', () => {
  beforeAll(async () => {
    scratch = await realpath(await mkdtemp(path.join(os.tmpdir(), 'kb-dependency-folders-')));
  });
  afterAll(async () => {
    await rm(scratch, { recursive: true, force: true });
  });

  it('walks up as Node does, never looking in node_modules/node_modules', async () => {
    const plugin = path.join(scratch, 'node_modules', 'plugin');
    await mkdir(plugin, { recursive: true });
    // Node never resolves through it: a plugin installed in node_modules must not be shown it.
    await mkdir(path.join(scratch, 'node_modules', 'node_modules'));
    const folders = dependencyFolders(plugin);
    expect(folders).toContain(path.join(scratch, 'node_modules'));
    expect(folders).not.toContain(path.join(scratch, 'node_modules', 'node_modules'));
  });
});

import { readdirSync, readlinkSync, renameSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { MANIFEST_FILE, PluginRegistry } from '@kb-labs/plugin-execution-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

let tmp: string;

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'kb-core-reload-again-test-'));
});

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const manifestText = (handler: string, padding = 0) => JSON.stringify({ id: '@t/p', version: '1.0.0', handlers: { [handler]: { entry: `${handler}.js` } } }) + ' '.repeat(padding);

/** Until this process holds `file` open (the reload has opened it and is reading it): Linux's /proc/self/fd. */
async function openedHere(file: string): Promise<void> {
  for (let i = 0; i < 10_000; i++) {
    for (const fd of readdirSync('/proc/self/fd')) {
      try {
        if (readlinkSync(`/proc/self/fd/${fd}`) === file) return;
      } catch {
        // Closed meanwhile.
      }
    }
    await new Promise((resolve) => setImmediate(resolve));
  }
  throw new Error(`${file} was never opened`);
}

describe.runIf(process.platform === 'linux')('a reload whose plugin is registered again from its folder while it reads', () => {
  it.each([
    ['unregistered, then loaded again', true],
    ['loaded again (its manifest changed)', false],
  ])('leaves the newer manifest installed, not the older one the reload read: %s', async (_, unregister) => {
    const dir = await mkdtemp(path.join(tmp, 'plugin-'));
    const file = path.join(dir, MANIFEST_FILE);
    // Large (spaces after the JSON): the reload reads it in many chunks, while the new file is one.
    writeFileSync(file, manifestText('old', 64 * 1024 * 1024));
    const registry = new PluginRegistry();
    await registry.load(dir);
    const reloaded = registry.reload('@t/p');
    await openedHere(file);
    // A deploy saves the new manifest (a rename, as editors and build tools do) and registers the plugin afresh.
    writeFileSync(`${file}.new`, manifestText('new'));
    renameSync(`${file}.new`, file);
    if (unregister) registry.unregister('@t/p');
    const registered = await registry.load(dir);
    expect(Object.keys(registered.manifest.handlers)).toEqual(['new']);
    await reloaded;
    expect(Object.keys(registry.get('@t/p')!.manifest.handlers)).toEqual(['new']);
    expect(() => registry.resolve('@t/p', 'new')).not.toThrow();
  }, 60_000);
});

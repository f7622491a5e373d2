/**
 * What a `{ root, manifest }` plugin source is checked for before it is registered
 * (host/plugin-source.ts): an empty root names no folder, and each field is read once.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PluginRegistry, ValidationError } from '@kb-labs/plugin-execution-core';
import { afterAll, beforeAll, expect, it } from 'vitest';

let root: string;
const manifest = { id: '@t/source', version: '1.0.0', handlers: { run: { entry: './run.mjs' } } };

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'kb-plugin-source-'));
  await writeFile(path.join(root, 'run.mjs'), 'export default async (input) => input;');
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

it('an empty root is refused naming root, not taken for the working directory (register(), and in a plugins list, where its failure names no folder)', async () => {
  let error: unknown;
  try {
    new PluginRegistry().register({ root: '', manifest });
  } catch (thrown) {
    error = thrown;
  }
  expect(error).toBeInstanceOf(ValidationError);
  expect((error as ValidationError).details).toMatchObject({ issues: [{ path: 'root', message: 'must be a non-empty path string' }] });
  const [failure, ...rest] = await new PluginRegistry().addEach([{ root: '', manifest }]);
  expect(rest).toEqual([]);
  expect(failure).toMatchObject({ source: 'plugins[0]', error: { code: 'VALIDATION_ERROR' } });
  expect(failure).not.toHaveProperty('root');
});

it('reads root and manifest once each: what was checked is what is registered', () => {
  const reads = { root: 0, manifest: 0 };
  const source = {
    get root(): string {
      reads.root++;
      return root;
    },
    get manifest(): unknown {
      reads.manifest++;
      return manifest;
    },
  };
  const plugin = new PluginRegistry().register(source);
  expect(plugin).toMatchObject({ id: '@t/source', root });
  expect(reads).toEqual({ root: 1, manifest: 1 });
});

import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ExecutionResult, IExecutionBackend, RegisteredPlugin } from '@kb-labs/plugin-execution-core';
import { expect } from 'vitest';
import { expectOk, waitFor } from '../expect-result.js';
import { RELOADABLE } from '../fixtures.js';

/** What every backend built on core's BaseBackend has besides IExecutionBackend. */
export type ReloadingBackend = IExecutionBackend & {
  reloadPlugin(pluginId: string): Promise<RegisteredPlugin>;
  registerPlugin(source: string | { root: string; manifest: unknown }): Promise<RegisteredPlugin>;
  unregisterPlugin(pluginId: string): Promise<boolean>;
};

export const DEBOUNCE_MS = 50;
export const HANDLER = path.join('handlers', 'version.mjs');

export function reloading(backend: IExecutionBackend): ReloadingBackend {
  const candidate = backend as Partial<ReloadingBackend>;
  expect(typeof candidate.reloadPlugin).toBe('function');
  return backend as ReloadingBackend;
}

/** Replace `from` with `to` in a file of the plugin copy. */
export async function edit(dir: string, file: string, from: string, to: string): Promise<void> {
  const text = await readFile(path.join(dir, file), 'utf8');
  expect(text).toContain(from);
  await writeFile(path.join(dir, file), text.replace(from, to));
}

export async function versionOf(backend: IExecutionBackend, handlerId = 'version'): Promise<unknown> {
  const result = await backend.execute({ pluginId: RELOADABLE, handlerId });
  expectOk(result);
  return result.data;
}

/** An execution of the reloadable plugin that holds for 300 ms, once it has started (in an object: a promise returned would be awaited). */
export async function startedHolding(backend: IExecutionBackend): Promise<{ running: Promise<ExecutionResult> }> {
  let started = false;
  const running = backend.execute({ pluginId: RELOADABLE, handlerId: 'version', input: { holdMs: 300 } }, { onEvent: () => (started = true) });
  await waitFor(() => started);
  return { running };
}

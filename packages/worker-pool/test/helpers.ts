import { readdirSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fixturePlugins } from '@kb-labs/plugin-execution-conformance';
import type { ExecutionResult } from '@kb-labs/plugin-execution-core';
import { WorkerPoolBackend, type WorkerPoolBackendOptions, type WorkerPoolRunnerStats } from '@kb-labs/plugin-execution-worker-pool';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import { waitFor } from '@kb-labs/plugin-execution-conformance';

export { BASIC, HOSTILE, expectError, expectOk, waitFor } from '@kb-labs/plugin-execution-conformance';

export const POOL = '@wp/pool';
export const poolPlugin = path.resolve(path.dirname(fileURLToPath(import.meta.url)), 'fixtures/plugins/pool');

export async function runners(backend: WorkerPoolBackend): Promise<WorkerPoolRunnerStats> {
  return (await backend.stats()).runners as WorkerPoolRunnerStats;
}

/**
 * Every thread idle again, its verdict on its last execution heard: a result comes before that
 * verdict when the handler left handles, and on a loaded machine the next execute() can come
 * first and go to another thread. For tests of where tasks go, not of how fast.
 */
export async function allIdle(backend: WorkerPoolBackend): Promise<void> {
  await waitFor(async () => {
    const { busy, idle, threads } = await runners(backend);
    return busy === 0 && idle === threads;
  });
}

/** Threads of this process (Linux); undefined elsewhere. */
export function osThreads(): number | undefined {
  try {
    return readdirSync('/proc/self/task').length;
  } catch {
    return undefined;
  }
}

/** Handles and timers keeping the process alive, less file-system requests (vitest's and the workspace cleanup's come and go). */
export function resources(): string[] {
  return process
    .getActiveResourcesInfo()
    .filter((type) => !/^(FSReq|FileHandle|CloseReq)/.test(type))
    .sort();
}

/** Resource types of which there are more now than before. */
export function grown(before: string[], after: string[]): string[] {
  const left = [...before];
  return after.filter((type) => {
    const i = left.indexOf(type);
    if (i === -1) return true;
    left.splice(i, 1);
    return false;
  });
}

/**
 * Backends over the fixture plugins, each with a workspace root that must be empty after every
 * test (every lease released, on every path), all shut down after each test.
 */
export function useBackends() {
  let root = '';
  const made: WorkerPoolBackend[] = [];
  beforeAll(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'kb-worker-pool-'));
  });
  afterEach(async () => {
    await Promise.all(made.splice(0).map((b) => b.shutdown({ timeoutMs: 2000 })));
    expect(await readdir(root)).toEqual([]);
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });
  return {
    get root() {
      return root;
    },
    make(options: WorkerPoolBackendOptions = {}): WorkerPoolBackend {
      const backend = new WorkerPoolBackend({
        plugins: [fixturePlugins.basic, fixturePlugins.hostile, poolPlugin],
        workspace: { root },
        maxThreads: 2,
        ...options,
      });
      made.push(backend);
      return backend;
    },
  };
}

export function okData<T = Record<string, unknown>>(result: ExecutionResult): T {
  if (!result.ok) throw new Error(`expected ok, got ${result.error.code}: ${result.error.message}`, { cause: result.error });
  return result.data as T;
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

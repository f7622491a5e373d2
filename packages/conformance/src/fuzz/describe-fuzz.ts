import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { BackendOptions } from '@kb-labs/plugin-execution-core';
import { expect, it } from 'vitest';
import { fixturePlugins } from '../fixtures.js';
import { driveFuzzRun, type FuzzedBackend } from './fuzz-driver.js';
import { fuzzRunProblems } from './fuzz-invariants.js';
import type { FuzzRun } from './fuzz-record.js';
import { SeededRandom } from './seeded-random.js';
import { activeResources, childProcesses, threadCount, untilNoneLeft } from './leftovers.js';

export interface FuzzCapabilities {
  /** Handlers that exit their runner or throw in a timer are among the acts (never in-process). */
  isolatesCrashes: boolean;
}

/** The seeds a test file runs: FUZZ_SEEDS="7,8" replays those, FUZZ_RUNS=300 runs seeds 1..300 (FUZZ_FROM=1000: 1000..1299); else `fixed`. */
export function fuzzSeeds(fixed: number[]): number[] {
  const listed = process.env.FUZZ_SEEDS?.split(',').map(Number).filter(Number.isInteger);
  if (listed?.length) return listed;
  const runs = Number(process.env.FUZZ_RUNS);
  const from = Number(process.env.FUZZ_FROM ?? 1);
  return runs > 0 ? Array.from({ length: runs }, (_, i) => from + i) : fixed;
}

/**
 * One test per seed: `runFuzzSeed`, and none of the invariants broken. A failure names its seed
 * (FUZZ_SEEDS=n replays it) and lists the operations made.
 */
export function describeFuzz(name: string, create: FuzzBackendFactory, capabilities: FuzzCapabilities, seeds: number[]): void {
  for (const seed of fuzzSeeds(seeds)) {
    it(`fuzz ${name}, seed ${seed} (replay: FUZZ_SEEDS=${seed})`, async () => {
      const { problems, run } = await runFuzzSeed(seed, create, capabilities);
      if (process.env.FUZZ_SUMMARY) console.log(`fuzz ${name} seed ${seed}: ${outcomes(run)}`);
      expect(problems, `seed ${seed} (FUZZ_SEEDS=${seed} replays it):\n${run.log.join('\n')}\n`).toEqual([]);
    }, 60_000);
  }
}

export type FuzzBackendFactory = (options: BackendOptions & Record<string, unknown>) => FuzzedBackend;

/**
 * A fresh backend from `create`, driven at random (`driveFuzzRun`), shut down at a random point;
 * then every invariant checked, and nothing left: no child process, workspace, temporary
 * directory, thread or handle more than before. Resolves with what broke (empty: nothing) and the run.
 */
export async function runFuzzSeed(seed: number, create: FuzzBackendFactory, capabilities: FuzzCapabilities): Promise<{ problems: string[]; run: FuzzRun }> {
  const root = await mkdtemp(path.join(os.tmpdir(), `kb-fuzz-${seed}-`));
  const tmp = await mkdtemp(path.join(os.tmpdir(), `kb-fuzz-tmp-${seed}-`));
  const savedTmp = process.env.TMPDIR;
  // What the backend makes in the temporary directory is made here, and must be gone after.
  process.env.TMPDIR = tmp;
  const threadsBefore = await threadCount();
  // Children the test runs itself (a queue backend's worker processes) are not the backend's.
  const childrenBefore = new Set(await childProcesses());
  const resourcesBefore = activeResources().length;
  const run: FuzzRun = { seed, log: [], executions: [], hits: new Map(), pluginsLoaded: false, loadingWaiters: new Set(), snapshots: [], changeErrors: [] };
  let backend: FuzzedBackend | undefined;
  try {
    backend = create({ plugins: [fixturePlugins.fuzz], workspace: { root }, ...limitsOf(seed), permissions: { platform: { marks: true } }, platform: markingPlatform(run) });
    await driveFuzzRun(backend, run, { isolatesCrashes: capabilities.isolatesCrashes, steps: 36 });
    run.finalStats = await backend.stats();
    run.finalHealth = await backend.health();
    const problems = fuzzRunProblems(run);
    problems.push(...(await leftovers(root, tmp, childrenBefore, threadsBefore, resourcesBefore)));
    return { problems, run };
  } finally {
    // A run that threw half-way still leaves nothing running.
    await backend?.shutdown({ timeoutMs: 0 }).catch(() => {});
    if (savedTmp === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = savedTmp;
    await rm(root, { recursive: true, force: true });
    await rm(tmp, { recursive: true, force: true });
  }
}

/** The host's services the fuzz plugin calls: `marks.hit(tag)` counts the handler bodies that began. */
function markingPlatform(run: FuzzRun) {
  return {
    marks: {
      async hit(tag: string) {
        run.hits.set(tag, (run.hits.get(tag) ?? 0) + 1);
      },
      async echo(value: unknown) {
        return value;
      },
    },
  };
}

/** The limits, from the seed too: a queue of 0 refuses at once, one slot serialises. */
function limitsOf(seed: number): { maxConcurrency: number; maxQueue: number; perPluginConcurrency?: number } {
  const random = new SeededRandom(seed ^ 0x5eed);
  const limits = { maxConcurrency: random.int(1, 2), maxQueue: random.pick([0, 1, 4, 8]) };
  return random.chance(0.3) ? { ...limits, perPluginConcurrency: 1 } : limits;
}

async function leftovers(root: string, tmp: string, childrenBefore: Set<string>, threadsBefore: number, resourcesBefore: number): Promise<string[]> {
  const problems: string[] = [];
  const children = await untilNoneLeft(async () => (await childProcesses()).filter((child) => !childrenBefore.has(child)), 3000);
  if (children.length > 0) problems.push(`child processes left: ${children.join(', ')}`);
  const workspaces = await untilNoneLeft(() => readdir(root), 3000);
  if (workspaces.length > 0) problems.push(`workspaces left: ${workspaces.join(', ')}`);
  const temporary = await untilNoneLeft(() => readdir(tmp), 3000);
  if (temporary.length > 0) problems.push(`temporary entries left: ${temporary.join(', ')}`);
  const threads = await untilNoneLeft(async () => ((await threadCount()) > threadsBefore ? [await threadCount()] : []), 3000);
  if (threads.length > 0) problems.push(`threads: ${threadsBefore} before, ${threads[0]} after`);
  const resources = await untilNoneLeft(() => (activeResources().length > resourcesBefore ? activeResources() : []), 3000);
  if (resources.length > 0) problems.push(`active resources: ${resourcesBefore} before, after: ${resources.join(', ')}`);
  return problems;
}

/** What the run's executions ended with, by act: `ok:ok ×2, hang:TIMEOUT, …`. */
function outcomes(run: FuzzRun): string {
  const counts = new Map<string, number>();
  for (const { act, result } of run.executions) {
    const key = `${act}:${result ? (result.ok ? 'ok' : result.error.code) : 'rejected'}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return [...counts].map(([key, count]) => (count > 1 ? `${key} x${count}` : key)).join(', ');
}

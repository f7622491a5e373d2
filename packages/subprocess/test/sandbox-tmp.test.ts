import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ValidationError } from '@kb-labs/plugin-execution-core';
import { expectOk } from '@kb-labs/plugin-execution-conformance';
import { SubprocessBackend, type SubprocessBackendOptions, type SubprocessRunnerStats } from '@kb-labs/plugin-execution-subprocess';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PROBE, eventually, probePlugin } from './helpers.js';

// A sandboxed child's private /tmp is a tmpfs: kernel memory outside its heap limit. Unbounded it
// took up to half the machine's RAM per child (a handler writing 1 GiB there wrote it all), so a
// few hostile children could push the host into the OOM killer. Real bubblewrap, real tmpfs.
const linux = process.platform === 'linux';
const MB = 1024 * 1024;

interface Filled {
  before: string[];
  writtenMb: number;
  stoppedBy: string | null;
  tmpBytes: number;
}

let workspaceRoot: string;
const backends: SubprocessBackend[] = [];

function make(options: SubprocessBackendOptions = {}): SubprocessBackend {
  // The permission model off: a handler may write /tmp (as one granted childProcess can through what it runs).
  const backend = new SubprocessBackend({ plugins: [probePlugin], workspace: { root: workspaceRoot }, sandbox: 'required', enforcePermissions: false, ...options });
  backends.push(backend);
  return backend;
}

async function fillTmp(backend: SubprocessBackend, mb: number): Promise<Filled> {
  const result = await backend.execute({ pluginId: PROBE, handlerId: 'fill-tmp', input: { mb } });
  expectOk(result);
  return result.data as Filled;
}

beforeAll(async () => {
  workspaceRoot = await mkdtemp(path.join(os.tmpdir(), 'kb-sandbox-tmp-test-'));
});

afterEach(async () => {
  await Promise.all(backends.splice(0).map((b) => b.shutdown({ timeoutMs: 2000 })));
  expect(await readdir(workspaceRoot)).toEqual([]);
});

afterAll(async () => {
  await rm(workspaceRoot, { recursive: true, force: true });
});

describe('sandboxTmpMb', () => {
  it('0, a negative, a fraction, a string or more than 1 TiB is a ValidationError naming sandboxTmpMb', () => {
    for (const bad of [0, -1, 1.5, '256', 1_048_577]) {
      expect(() => make({ sandboxTmpMb: bad as number })).toThrow(ValidationError);
      expect(() => make({ sandboxTmpMb: bad as number })).toThrow(new RegExp(`sandboxTmpMb: must be an integer from 1 to 1048576, got ${JSON.stringify(bad).replace('.', '\\.')}`));
    }
  });

  it.runIf(linux)('by default a child writing 1 GiB into /tmp stops at 256 MiB with ENOSPC, health() says the bound, and the next child finds /tmp empty', async () => {
    const backend = make();
    const first = await fillTmp(backend, 1024);
    // Before: 1024 MiB written, into a tmpfs of half the machine's RAM.
    expect(first).toMatchObject({ writtenMb: 256, stoppedBy: 'ENOSPC', tmpBytes: 256 * MB });
    expect(first.before).not.toContain('fill');
    const second = await fillTmp(backend, 1);
    expect(second).toMatchObject({ writtenMb: 8, stoppedBy: null, before: first.before });
    const health = await backend.health();
    expect(health.ok).toBe(true);
    expect(health.isolation.layers).toContain('own /tmp of 256 MiB, /dev/shm of 64 MiB');
  });

  it.runIf(linux)('a spare (prespawn) gets the same bound as a cold child', async () => {
    const backend = make({ sandboxTmpMb: 16, prespawn: 1 });
    expect(await fillTmp(backend, 64)).toMatchObject({ writtenMb: 16, stoppedBy: 'ENOSPC', tmpBytes: 16 * MB });
    const stats = async () => (await backend.stats()).runners as SubprocessRunnerStats;
    expect(await eventually(async () => (await stats()).spares.ready >= 1, 10_000)).toBe(true);
    expect(await fillTmp(backend, 64)).toMatchObject({ writtenMb: 16, stoppedBy: 'ENOSPC', tmpBytes: 16 * MB });
    expect((await stats()).fromSpare).toBe(1);
  });
});

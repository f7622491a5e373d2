/**
 * A host process may hold descriptors it inherited without close-on-exec (here: fd 40, a pipe its
 * own parent gave it). A child must not get them: with the sandbox and without it. (Node marks
 * descriptors 3-16 close-on-exec when it starts, so one of those would reach no child anyway.)
 */
import { mkdtemp, rm } from 'node:fs/promises';
import type { StdioOptions } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fixturePlugins } from '@kb-labs/plugin-execution-conformance';
import { sandboxPlatform } from '@kb-labs/plugin-execution-conformance/hostile-matrix';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { hostFailure, startHost, type HostProcess } from './sandbox-helpers.js';

interface FdReport {
  hostFd?: { ino: number; mode: number };
  isolation?: { active?: string };
  fds?: { fd: number; ino: number; mode: number }[];
  error?: string;
}

/** The host's descriptor number for the pipe it is started with. */
const PASSED = 40;
let root: string;
const hosts: HostProcess[] = [];

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'kb-sandbox-fds-'));
});

afterEach(() => {
  for (const host of hosts.splice(0)) if (host.child.exitCode === null && host.child.signalCode === null) host.child.kill('SIGKILL');
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Runs the fds host with `sandbox`, an extra inherited pipe on its fd PASSED. */
async function reportFor(sandbox: 'required' | 'off'): Promise<FdReport> {
  const stdio: StdioOptions = ['ignore', 'pipe', 'pipe', ...Array<'ignore'>(PASSED - 3).fill('ignore'), 'pipe'];
  const host = startHost('sandbox-host-fds.mjs', { plugin: fixturePlugins.hostile, root, sandbox, passed: PASSED }, stdio);
  hosts.push(host);
  const line = await host.waitFor('fds', 60_000);
  expect(line, hostFailure(host, 'the child descriptors')).toBeDefined();
  await host.exited;
  return line as FdReport;
}

function expectNoInheritedFd(report: FdReport): void {
  expect(report.error, `the host failed: ${report.error}`).toBeUndefined();
  const hostIno = report.hostFd?.ino;
  expect(hostIno, `the host had fd ${PASSED} open`).toBeGreaterThan(0);
  const fds = report.fds ?? [];
  expect(fds.map((f) => f.fd)).toEqual(expect.arrayContaining([0, 1, 2, 3]));
  expect(fds.filter((f) => f.ino === hostIno), `child descriptors: ${JSON.stringify(fds)}`).toEqual([]);
}

describe('descriptors the host inherited do not reach the child', () => {
  it.skipIf(!sandboxPlatform)(`with sandbox 'required' (bubblewrap, Linux only${sandboxPlatform ? '' : `; this is ${process.platform}`})`, async () => {
    const report = await reportFor('required');
    expect(report.isolation?.active, `bubblewrap is required for this test: ${JSON.stringify(report.isolation ?? report.error)}`).toBe('bubblewrap');
    expectNoInheritedFd(report);
  }, 90_000);

  it.skipIf(process.platform === 'win32')("with sandbox 'off' (a plain child process; POSIX descriptors, not on Windows)", async () => {
    const report = await reportFor('off');
    expect(report.isolation?.active).toBe('process');
    expectNoInheritedFd(report);
  }, 90_000);
});

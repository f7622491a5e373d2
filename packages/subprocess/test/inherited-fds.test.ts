/**
 * The host tells each child which descriptors it inherited without close-on-exec, for the child
 * to close before plugin code runs. What the host found of a descriptor is kept between spawns
 * (a busy host holds thousands): the list must stay what /proc says at each spawn, through a
 * number closed and opened again on the same file, and through numbers used and freed.
 */
import { openSync, closeSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { StdioOptions } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { hasProc, probePlugin } from './helpers.js';
import { hostFailure, startHost, type HostProcess } from './sandbox-helpers.js';

/** The host's descriptor number for the file it is started with. */
const PASSED = 40;
let root: string;
let file: string;
const hosts: HostProcess[] = [];

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'kb-inherited-fds-'));
  file = path.join(root, 'passed-down.txt');
  await writeFile(file, 'a file the host was started with\n');
});

afterEach(() => {
  for (const host of hosts.splice(0)) if (host.child.exitCode === null && host.child.signalCode === null) host.child.kill('SIGKILL');
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('descriptors a child is told to close', () => {
  it.skipIf(!hasProc)('follow what the host holds at each spawn (Linux: /proc)', async () => {
    const passed = openSync(file, 'r');
    let host: HostProcess;
    try {
      // Node marks descriptors 3-16 close-on-exec when it starts: one above them stays inherited.
      const stdio: StdioOptions = ['ignore', 'pipe', 'pipe', ...Array<'ignore'>(PASSED - 3).fill('ignore'), passed];
      host = startHost('inherited-fds-host.mjs', { plugin: probePlugin, root, passed: PASSED }, stdio);
    } finally {
      closeSync(passed);
    }
    hosts.push(host);
    const line = await host.waitFor('first', 60_000);
    expect(line, hostFailure(host, 'the close lists')).toBeDefined();
    expect(line!.error, `the host failed: ${String(line!.error)}`).toBeUndefined();
    // Inherited: the child is told to close it.
    expect((line!.first as string).split(',')).toContain(String(PASSED));
    // Closed and opened again by the host (close-on-exec, as Node opens files), on the same file:
    // a child no longer gets it, so it must not be told to close that number (there it may be Node's own).
    expect(line!.sameFile).toBe(true);
    expect((line!.reopened as string).split(',')).not.toContain(String(PASSED));
    expect((line!.churn as string).split(',')).not.toContain(String(PASSED));
    await host.exited;
  }, 90_000);
});

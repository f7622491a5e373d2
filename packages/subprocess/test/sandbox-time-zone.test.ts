/**
 * Where `TZ` is not set, the C library and Node's ICU take the machine's time zone from
 * /etc/localtime (how timedatectl, tzdata's installer and most server images set it). Every
 * backend's handler keeps that local time but a sandboxed child's, unless the sandbox shows the
 * file: without it, dates there were formatted in UTC.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { probePlugin } from './helpers.js';
import { hostFailure, startHost, type HostProcess } from './sandbox-helpers.js';

/** A zone other than the machine's own, so that the test tells the host's local time from UTC. */
const ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone === 'Asia/Tokyo' ? 'America/Sao_Paulo' : 'Asia/Tokyo';
const ZONE_FILE = `/usr/share/zoneinfo/${ZONE}`;

/**
 * Runs the host in a mount namespace of its own whose /etc is an overlay of the machine's with
 * /etc/localtime leading to `ZONE_FILE` (the machine's /etc is untouched); not root, in a user
 * namespace of its own as well.
 */
function zoneLauncher(scratch: string): string[] {
  const asRoot = process.getuid?.() === 0 ? [] : ['--user', '--map-root-user'];
  const script = 'mount -t overlay overlay -o "lowerdir=/etc,upperdir=$0/upper,workdir=$0/work" /etc && ln -sfn "$1" /etc/localtime && shift && exec "$@"';
  return ['unshare', ...asRoot, '--mount', '--propagation', 'private', 'sh', '-c', script, scratch, ZONE_FILE];
}

let root: string;
let scratch: string;
const hosts: HostProcess[] = [];

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'kb-sandbox-zone-'));
  scratch = await mkdtemp(path.join(os.tmpdir(), 'kb-sandbox-zone-etc-'));
  await Promise.all([mkdir(path.join(scratch, 'upper')), mkdir(path.join(scratch, 'work'))]);
});

afterEach(() => {
  for (const host of hosts.splice(0)) if (host.child.exitCode === null && host.child.signalCode === null) host.child.kill('SIGKILL');
});

afterAll(async () => {
  for (const dir of [root, scratch]) await rm(dir, { recursive: true, force: true });
});

describe("the host's time zone (/etc/localtime, no TZ)", () => {
  it('is a sandboxed handler\'s too, at the cost of one read-only bind (the zone\'s file)', async () => {
    expect(existsSync(ZONE_FILE), `the test needs the tzdata package (${ZONE_FILE})`).toBe(true);
    const host = startHost('sandbox-host-time-zone.mjs', { plugin: probePlugin, root }, ['ignore', 'pipe', 'pipe'], zoneLauncher(scratch));
    hosts.push(host);
    const line = await host.waitFor('child', 60_000);
    expect(line, hostFailure(host, 'what the handler saw')).toBeDefined();
    expect(line!.error, `the host failed: ${String(line!.error)}`).toBeUndefined();
    expect((line!.isolation as { active: string }).active, 'bubblewrap is required for this test on Linux').toBe('bubblewrap');
    // The host keeps the zone of its /etc/localtime (the test means something), with no TZ to pass on.
    expect(line!.host).toMatchObject({ timeZone: ZONE });
    // Before: { timeZone: 'UTC', epoch: 'Thu Jan 01 1970 00:00:00 GMT+0000 (Coordinated Universal Time)' }.
    expect(line!.child).toMatchObject({ timeZone: ZONE, epoch: (line!.host as { epoch: string }).epoch, envTZ: null });
    // Before: [] (nothing of the zone shown).
    expect((line!.childMounts as { zoneMounts: unknown }).zoneMounts).toEqual([ZONE_FILE]);
  }, 90_000);
});

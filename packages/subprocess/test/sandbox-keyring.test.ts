/**
 * The kernel's keyrings are not namespaced: a process keeps the session keyring it inherited
 * through bubblewrap's user namespace, and "possesses" the keys in it whatever its uid. A host
 * with a session keyring of its own (a systemd service has one, so does a container started by
 * runc, or a login shell) hands it to every sandboxed child: a plugin that may run programs
 * would read the host's keys and leave keys there that every later execution, of any plugin,
 * reads. The sandbox's system-call filter leaves the keyring calls out (ENOSYS).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sandboxPlatform } from '@kb-labs/plugin-execution-conformance/hostile-matrix';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { probePlugin } from './helpers.js';
import { hostFailure, startHost, type HostProcess } from './sandbox-helpers.js';

/** keyctl(2) and add_key(2) by architecture (the filter's architectures). */
const KEYRING_CALLS: Record<string, { keyctl: number; addKey: number }> = { x64: { keyctl: 250, addKey: 248 }, arm64: { keyctl: 219, addKey: 217 } };
const ENOSYS = 38;
const SECRET = 'host secret in its session keyring';

/** Perl that joins a session keyring of its own, puts the secret in it, and becomes the host (`exec` the rest of argv). */
function keyringLauncher(calls: { keyctl: number; addKey: number }): string[] {
  const perl = [
    `my ($name, $type, $desc, $secret) = ("kb-test-host", "user", "kb-host-secret", ${JSON.stringify(SECRET)});`,
    `syscall(${calls.keyctl}, 1, $name) >= 0 or die "join a session keyring: $!";`,
    `syscall(${calls.addKey}, $type, $desc, $secret, length($secret), -3) >= 0 or die "add_key: $!";`,
    'exec @ARGV or die "exec: $!";',
  ].join(' ');
  return ['perl', '-e', perl];
}

let root: string;
const hosts: HostProcess[] = [];

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'kb-sandbox-keyring-'));
});

afterEach(() => {
  for (const host of hosts.splice(0)) if (host.child.exitCode === null && host.child.signalCode === null) host.child.kill('SIGKILL');
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Where the sandbox has a system-call filter (x86-64, arm64 Linux). */
const calls = sandboxPlatform ? KEYRING_CALLS[process.arch] : undefined;

describe("the host's session keyring", () => {
  it.skipIf(!calls)('is out of a sandboxed plugin\'s reach: it reads no key of the host\'s, and leaves none for the next execution', async () => {
    const host = startHost('sandbox-host-keyring.mjs', { plugin: probePlugin, root, ...calls! }, ['ignore', 'pipe', 'pipe'], keyringLauncher(calls!));
    hosts.push(host);
    const line = await host.waitFor('hostSees', 60_000);
    expect(line, hostFailure(host, 'what the executions read')).toBeDefined();
    expect(line!.error, `the host failed: ${String(line!.error)}`).toBeUndefined();
    expect((line!.isolation as { active: string }).active, 'bubblewrap is required for this test on Linux').toBe('bubblewrap');
    // The host's own keyring holds its secret (the test means something) and nothing a plugin left.
    expect(line!.hostSees).toEqual({ secret: `read: ${SECRET}`, left: 'read: errno 126' });
    // Before: "read: host secret in its session keyring" / "plant: ok", then "read: left by another execution".
    expect(line!.first).toBe(`read: errno ${ENOSYS}\nplant: errno ${ENOSYS}`);
    expect(line!.second).toBe(`read: errno ${ENOSYS}`);
  }, 90_000);
});

/**
 * What a sandboxed handler's process says of its user, home and host names, as
 * docs/writing-handlers.md states it: the sandbox shows none of the host's /etc, so it has an
 * /etc/passwd of its own (its user, home /tmp) and, unless the handler is granted the network
 * (then the host's is shown), an /etc/hosts naming `localhost` for its own `lo`. A change here is
 * a change to tell plugin authors of.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expectOk } from '@kb-labs/plugin-execution-conformance';
import { SubprocessBackend } from '@kb-labs/plugin-execution-subprocess';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { identityArgs, identityFiles } from '../src/host/sandbox-identity.js';
import { SandboxView } from '../src/host/sandbox-view.js';
import { PROBE, probePlugin } from './helpers.js';

let root: string;
const hostIsRoot = process.getuid?.() === 0;

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'kb-sandbox-identity-'));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('a sandboxed handler asking the system who and where it is', () => {
  it('has a home (/tmp, HOME unset) and a user of its own, the hostname "sandbox", and "localhost" on its own lo, with the network or without', async () => {
    await using backend = new SubprocessBackend({ sandbox: 'required', plugins: [probePlugin], workspace: { root }, permissions: { network: true } });
    const alone = await backend.execute({ pluginId: PROBE, handlerId: 'identity' });
    expectOk(alone);
    // Before: homedir and user ERR_SYSTEM_ERROR (no /etc/passwd), localhost and serves EAI_AGAIN (no /etc/hosts).
    // Writing the home is the permission model's to refuse, as for any host folder not granted.
    const user = hostIsRoot ? 'nobody' : 'sandbox';
    expect(alone.data).toEqual({ homedir: '/tmp', user, hostname: 'sandbox', localhost: '127.0.0.1', serves: 'ok', HOME: null, homeCache: 'ERR_ACCESS_DENIED' });
    const networked = await backend.execute({ pluginId: PROBE, handlerId: 'identity-network' });
    expectOk(networked);
    expect(networked.data).toMatchObject({ homedir: '/tmp', user, localhost: '127.0.0.1', serves: 'ok' });
    // Unsandboxed, the same handler gets the host's answers (the host's home and user, no HOME given).
    await using plain = new SubprocessBackend({ sandbox: 'off', plugins: [probePlugin], workspace: { root } });
    const host = await plain.execute({ pluginId: PROBE, handlerId: 'identity' });
    expectOk(host);
    expect(host.data).toMatchObject({ homedir: os.userInfo().homedir, user: os.userInfo().username, hostname: os.hostname(), localhost: expect.any(String), serves: 'ok' });
  }, 60_000);

  it("a library's default folder under the home can be made where only the sandbox restricts writes", async () => {
    await using backend = new SubprocessBackend({ sandbox: 'required', enforcePermissions: false, plugins: [probePlugin], workspace: { root } });
    const result = await backend.execute({ pluginId: PROBE, handlerId: 'identity' });
    expectOk(result);
    expect(result.data).toMatchObject({ homedir: '/tmp', homeCache: 'made' });
  }, 60_000);

  it("HOME from the host (baseEnv, or granted to a handler that declared it) is the sandbox's own home, never the host's path", async () => {
    const hostHome = process.env.HOME;
    process.env.HOME = path.join(root, 'host-home');
    try {
      await using backend = new SubprocessBackend({ sandbox: 'required', plugins: [probePlugin], workspace: { root }, baseEnv: ['PATH', 'HOME'], permissions: { env: ['HOME'] } });
      for (const handlerId of ['identity', 'identity-home']) {
        const result = await backend.execute({ pluginId: PROBE, handlerId });
        expectOk(result);
        expect(result.data, handlerId).toMatchObject({ HOME: '/tmp', homedir: '/tmp' });
      }
      await using plain = new SubprocessBackend({ sandbox: 'off', plugins: [probePlugin], workspace: { root }, permissions: { env: ['HOME'] } });
      const host = await plain.execute({ pluginId: PROBE, handlerId: 'identity-home' });
      expectOk(host);
      expect(host.data).toMatchObject({ HOME: process.env.HOME, homedir: process.env.HOME });
    } finally {
      if (hostHome === undefined) delete process.env.HOME;
      else process.env.HOME = hostHome;
    }
  }, 60_000);

  it.runIf(hostIsRoot)("on a root host with sandboxUser: false, the user is root, at home in /tmp", async () => {
    await using backend = new SubprocessBackend({ sandbox: 'required', sandboxUser: false, plugins: [probePlugin], workspace: { root } });
    const result = await backend.execute({ pluginId: PROBE, handlerId: 'identity' });
    expectOk(result);
    expect(result.data).toMatchObject({ homedir: '/tmp', user: 'root', localhost: '127.0.0.1' });
  }, 60_000);
});

describe("the sandbox's own files: one bind and one descriptor each, only where the host shows none", () => {
  const bindsIn = (args: string[]) => args.filter((arg) => arg === '--ro-bind-data').length;

  it('a bare view gets /etc/passwd and /etc/hosts, on descriptors 5 and 6', () => {
    const files = identityFiles(new SandboxView(), 65534, 65534);
    expect(files.map((file) => file.path)).toEqual(['/etc/passwd', '/etc/hosts']);
    expect(files[0]!.data.toString()).toBe('nobody:x:65534:65534:nobody:/tmp:/bin/sh\n');
    expect(files[1]!.data.toString()).toBe('127.0.0.1\tlocalhost\n::1\tlocalhost\n');
    expect(identityArgs(files, 5)).toEqual(['--ro-bind-data', '5', '/etc/passwd', '--ro-bind-data', '6', '/etc/hosts']);
  });

  it("none is bound over what the view shows: the host's /etc/hosts (network), its whole root (allowRead: ['/'])", () => {
    const networked = new SandboxView();
    networked.readOnly('/etc/hosts');
    const files = identityFiles(networked, 1000, 1000);
    expect(files.map((file) => file.path)).toEqual(['/etc/passwd']);
    expect(files[0]!.data.toString()).toBe('sandbox:x:1000:1000:sandbox:/tmp:/bin/sh\n');
    const everything = new SandboxView();
    everything.readOnly('/');
    expect(bindsIn(identityArgs(identityFiles(everything, 0, 0), 5))).toBe(0);
  });
});

/**
 * What a sandboxed handler's process says of its user, home and host names, as
 * docs/writing-handlers.md states it (the sandbox has no /etc/passwd and, unless the handler is
 * granted the network, no /etc/hosts): a change here is a change to tell plugin authors of.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expectOk } from '@kb-labs/plugin-execution-conformance';
import { SubprocessBackend } from '@kb-labs/plugin-execution-subprocess';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROBE, probePlugin } from './helpers.js';

let root: string;

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'kb-sandbox-identity-'));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('a sandboxed handler asking the system who and where it is', () => {
  it('os.homedir() and os.userInfo() throw ENOENT, the hostname is "sandbox", and "localhost" resolves only with the network granted', async () => {
    await using backend = new SubprocessBackend({ sandbox: 'required', plugins: [probePlugin], workspace: { root }, permissions: { network: true } });
    const alone = await backend.execute({ pluginId: PROBE, handlerId: 'identity' });
    expectOk(alone);
    expect(alone.data).toEqual({ homedir: 'ERR_SYSTEM_ERROR', user: 'ERR_SYSTEM_ERROR', hostname: 'sandbox', localhost: 'EAI_AGAIN' });
    const networked = await backend.execute({ pluginId: PROBE, handlerId: 'identity-network' });
    expectOk(networked);
    expect(networked.data).toMatchObject({ homedir: 'ERR_SYSTEM_ERROR', user: 'ERR_SYSTEM_ERROR', localhost: '127.0.0.1' });
    // Unsandboxed, the same handler gets the host's answers (the host's home and user, no HOME given).
    await using plain = new SubprocessBackend({ sandbox: 'off', plugins: [probePlugin], workspace: { root } });
    const host = await plain.execute({ pluginId: PROBE, handlerId: 'identity' });
    expectOk(host);
    expect(host.data).toMatchObject({ user: os.userInfo().username, hostname: os.hostname(), localhost: expect.any(String) });
  }, 60_000);
});

/**
 * The privileges a sandboxed child is left with, seen from a program it runs (`childProcess`:
 * outside Node's permission model, so only bubblewrap's flags and the system-call filter stand):
 * no capabilities (`--cap-drop ALL`: bubblewrap started as root keeps them all in the sandbox's
 * user namespace otherwise, enough to remount its read-only folders), no user namespace of its
 * own to make (`--disable-userns`), a session of its own (`--new-session`: no controlling
 * terminal to push input into), and no `openat2` or io_uring, which make files with a mode the
 * filter cannot read (a setuid file past the chmod rules). Each line of the shell below goes
 * with one of those; without the flag or rule it changes.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expectOk } from '@kb-labs/plugin-execution-conformance';
import { sandboxPlatform } from '@kb-labs/plugin-execution-conformance/hostile-matrix';
import { SubprocessBackend } from '@kb-labs/plugin-execution-subprocess';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROBE, probePlugin } from './helpers.js';

const hostIsRoot = process.getuid?.() === 0;

/** What the shell prints: its effective capabilities, its session's id (0: a session begun outside the pid namespace), whether it may make a user namespace. */
const LOOK = [
  'grep ^CapEff: /proc/self/status',
  'echo "session: $(cut -d" " -f6 /proc/self/stat)"',
  'if unshare -U true 2>/dev/null; then echo "userns: made"; else echo "userns: refused"; fi',
].join('; ');

/** openat2(AT_FDCWD, path, { O_CREAT | O_WRONLY, 04755 }) and io_uring_setup(1, params), by number (x86-64, arm64 alike): the error, or what they made. */
const SET_ID_BY_OTHER_CALLS = [
  '$path = shift;',
  '$how = pack("QQQ", 0100 | 01, 04755, 0);',
  '$fd = syscall(437, -100, $path, $how, length($how)); print $fd >= 0 ? "openat2: made\\n" : "openat2: $!\\n";',
  '$params = "\\0" x 120; $ring = syscall(425, 1, $params); print $ring >= 0 ? "io_uring: made\\n" : "io_uring: $!\\n";',
].join(' ');

let root: string;

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'kb-sandbox-privileges-'));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function runs(options: { sandboxUser?: false }, file: string, args: string[]): Promise<string[]> {
  await using backend = new SubprocessBackend({ sandbox: 'required', plugins: [probePlugin], workspace: { root }, permissions: { childProcess: true }, ...options });
  const result = await backend.execute({ pluginId: PROBE, handlerId: 'runs', input: { file, args } });
  expectOk(result);
  const { code, stdout, stderr } = result.data as { code: unknown; stdout: string; stderr: string };
  expect(code, stderr).toBe(0);
  return stdout.trim().split('\n');
}

describe.runIf(sandboxPlatform)('what a sandboxed child may still do', () => {
  // As root, bubblewrap itself keeps every capability unless told to drop them; the sandbox user's (uid 65534) has none to keep.
  it.runIf(hostIsRoot)('run as root (sandboxUser: false): no capabilities, no user namespace to make, a session of its own', async () => {
    const [caps, session, userns] = await runs({ sandboxUser: false }, 'sh', ['-c', LOOK]);
    // Before, without --cap-drop ALL: "CapEff: 000001fffeffffff".
    expect(caps).toMatch(/^CapEff:\s+0+$/);
    // Without --new-session: "session: 0", the host's session.
    expect(session).toMatch(/^session: [1-9]\d*$/);
    // Without --disable-userns: "userns: made".
    expect(userns).toBe('userns: refused');
  }, 60_000);

  it('run as the sandbox user: no user namespace to make, a session of its own', async () => {
    const [caps, session, userns] = await runs({}, 'sh', ['-c', LOOK]);
    expect(caps).toMatch(/^CapEff:\s+0+$/);
    expect(session).toMatch(/^session: [1-9]\d*$/);
    expect(userns).toBe('userns: refused');
  }, 60_000);

  it.runIf(process.arch === 'x64' || process.arch === 'arm64')('makes no setuid file through openat2, and has no io_uring: both are absent (ENOSYS)', async () => {
    // In its workspace: a folder of the host's file system.
    const said = await runs({}, 'perl', ['-e', SET_ID_BY_OTHER_CALLS, 'made-by-openat2']);
    // Before, without them in the filter's absent calls: "openat2: made" (a file of mode 4755), "io_uring: made".
    expect(said).toEqual(['openat2: Function not implemented', 'io_uring: Function not implemented']);
  }, 60_000);
});

import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { chmod, copyFile, cp, link, mkdir, mkdtemp, readFile, readdir, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ValidationError } from '@kb-labs/plugin-execution-core';
import { BASIC, HOSTILE, expectError, expectOk, fixturePlugins } from '@kb-labs/plugin-execution-conformance';
import { SubprocessBackend, type SubprocessBackendOptions, type SubprocessRunnerStats } from '@kb-labs/plugin-execution-subprocess';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PROBE, eventually, passableByOthers, probePlugin } from './helpers.js';

// The bubblewrap sandbox, for real: a real bwrap, real namespaces, real processes. On Linux these
// tests need bubblewrap installed (the README's test command installs it) and fail without it.
const linux = process.platform === 'linux';
/**
 * On a root host children drop to uid 65534 — where that user can reach the repository (every
 * folder above it passable by others); where it cannot (a checkout under a 0700 folder), they run
 * sandboxed as the host's user and say so. The tests check whichever applies here.
 */
const dropsToNobody = process.getuid?.() === 0 && passableByOthers(probePlugin);
const root = dropsToNobody;

/**
 * A plugin `@sandbox-test/<name>` in a folder of mode `mode`, whose one handler `run` (with
 * `permissions`) is `lines`, after `fs`, `at(name)` (a path in its `out` folder) and `attempt(fn)`
 * ("done", or the code of what it threw).
 */
async function outFolderPlugin(name: string, mode: number, permissions: Record<string, unknown>, lines: string[]): Promise<string> {
  const plugin = await mkdtemp(path.join(scratch, `${name}-plugin-`));
  await chmod(plugin, mode);
  const preamble = [
    "import fs from 'node:fs';",
    "const at = (name) => new URL(`./out/${name}`, import.meta.url);",
    'const attempt = (fn) => { try { fn(); return "done"; } catch (error) { return error.code ?? error.message; } };',
  ];
  await writeFile(path.join(plugin, 'handler.mjs'), [...preamble, ...lines].join('\n'));
  const handlers = { run: { entry: './handler.mjs', permissions } };
  await writeFile(path.join(plugin, 'kb.plugin.json'), JSON.stringify({ id: `@sandbox-test/${name}`, version: '1.0.0', handlers }));
  return plugin;
}

async function sparesReady(backend: SubprocessBackend, count: number): Promise<void> {
  const until = Date.now() + 10_000;
  while (((await backend.stats()).runners as SubprocessRunnerStats).spares.ready < count && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
}

let workspaceRoot: string;
let outside: string;
let scratch: string;
const backends: SubprocessBackend[] = [];

function make(options: SubprocessBackendOptions = {}): SubprocessBackend {
  const backend = new SubprocessBackend({
    plugins: [probePlugin, fixturePlugins.basic, fixturePlugins.hostile],
    workspace: { root: workspaceRoot },
    ...options,
  });
  backends.push(backend);
  return backend;
}

/** Collects the process warnings emitted while `fn` runs. */
/** Make a backend with no bubblewrap on PATH (the lookup happens at construction). */
function makeWithoutBwrapOnPath(options: SubprocessBackendOptions): SubprocessBackend {
  const saved = process.env.PATH;
  process.env.PATH = scratch;
  try {
    return make(options);
  } finally {
    process.env.PATH = saved;
  }
}

async function warningsDuring(fn: () => Promise<void>): Promise<Error[]> {
  const seen: Error[] = [];
  const listener = (warning: Error) => seen.push(warning);
  process.on('warning', listener);
  try {
    await fn();
    await new Promise((resolve) => setImmediate(resolve));
  } finally {
    process.off('warning', listener);
  }
  return seen;
}

beforeAll(async () => {
  workspaceRoot = await mkdtemp(path.join(os.tmpdir(), 'kb-sandbox-test-'));
  outside = await mkdtemp(path.join(os.tmpdir(), 'kb-sandbox-outside-'));
  scratch = await mkdtemp(path.join(os.tmpdir(), 'kb-sandbox-scratch-'));
  // The stand-in bwrap scripts here run as the sandbox user on a root host.
  await chmod(scratch, 0o755);
  await writeFile(path.join(outside, 'secret.txt'), 'host secret');
});

afterEach(async () => {
  await Promise.all(backends.splice(0).map((b) => b.shutdown({ timeoutMs: 2000 })));
  expect(await readdir(workspaceRoot)).toEqual([]);
});

afterAll(async () => {
  for (const dir of [workspaceRoot, outside, scratch]) await rm(dir, { recursive: true, force: true });
});

describe('options', () => {
  it('an unknown sandbox mode, an empty bwrapPath or a bad sandboxUser is a ValidationError naming the option', () => {
    expect(() => make({ sandbox: 'sometimes' as never })).toThrow(/sandbox: must be one of 'auto', 'required', 'off'/);
    expect(() => make({ bwrapPath: '' })).toThrow(/bwrapPath: must be a non-empty string/);
    expect(() => make({ sandboxUser: { uid: -1, gid: 5 } })).toThrow(/sandboxUser\.uid: must be an integer from 1 to 4294967294/);
  });

  it('a relative allowRead (which would follow the host\'s working directory at each child\'s start) is a ValidationError naming it', () => {
    expect(() => make({ allowRead: ['/usr/share', '.'] })).toThrow(/allowRead: must be absolute paths, got "\."/);
    expect(() => make({ allowRead: ['shared/deps'] })).toThrow(/allowRead: must be absolute paths, got "shared\/deps"/);
  });

  it.runIf(linux)("'required' where bubblewrap does not exist: construction fails and says why", () => {
    expect(() => makeWithoutBwrapOnPath({ sandbox: 'required' })).toThrow(/sandbox: 'required' cannot work here: bubblewrap not found \("bwrap" on PATH\)/);
  });

  it.runIf(linux)("a bwrapPath given that is not there is a ValidationError naming it, under 'auto' too (not every child run unsandboxed on a typo); under 'off' it is not looked at", () => {
    const typo = path.join(scratch, 'bwarp');
    for (const sandbox of ['auto', 'required', undefined] as const) {
      let thrown: unknown;
      try {
        make({ sandbox, bwrapPath: typo });
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(ValidationError);
      expect((thrown as ValidationError).message).toBe(`bwrapPath: no executable file at "${typo}"; fix it, leave bwrapPath out to use "bwrap" from PATH, or set sandbox: 'off'`);
      expect((thrown as ValidationError).details).toMatchObject({ path: 'bwrapPath' });
    }
    expect(() => make({ bwrapPath: 'bwarp' })).toThrow('bwrapPath: no executable "bwarp" on PATH');
    // A folder passes access(X_OK) (it may be entered): not taken for bubblewrap.
    expect(() => make({ bwrapPath: '/usr/bin' })).toThrow('bwrapPath: no executable file at "/usr/bin"');
    expect(make({ sandbox: 'off', bwrapPath: typo })).toBeInstanceOf(SubprocessBackend);
  });

  it.runIf(!linux)("'required' off Linux: construction fails and says bubblewrap is Linux-only", () => {
    expect(() => make({ sandbox: 'required' })).toThrow(/Linux only/);
  });
});

describe.runIf(linux)('where the sandbox cannot run', () => {
  it("'auto' with no bubblewrap runs children as before, warns once and says so in health()", async () => {
    const warnings = await warningsDuring(async () => {
      const first = makeWithoutBwrapOnPath({ sandbox: 'auto' });
      makeWithoutBwrapOnPath({ sandbox: 'auto' });
      const result = await first.execute({ pluginId: BASIC, handlerId: 'echo', input: 'still runs' });
      expectOk(result);
      const health = await first.health();
      expect(health.ok).toBe(true);
      expect(health.isolation).toMatchObject({ requested: 'auto', active: 'process' });
      expect(health.isolation.reason).toContain('bubblewrap not found');
      expect((await first.stats()).runners).toMatchObject({ sandboxed: false });
    });
    const ours = warnings.filter((w) => (w as { code?: string }).code === 'KB_PLUGIN_SANDBOX_UNAVAILABLE' && w.message.includes('bubblewrap not found ("bwrap" on PATH)'));
    expect(ours).toHaveLength(1);
  });

  it("'auto' where the probe fails: children run unsandboxed, the host is warned once why, and health() says so", async () => {
    const refusing = path.join(scratch, 'refusing-bwrap-auto');
    await writeFile(refusing, '#!/bin/sh\necho "bwrap: setting up uid map: Permission denied" >&2\nexit 1\n');
    await chmod(refusing, 0o755);
    const warnings = await warningsDuring(async () => {
      const backend = make({ sandbox: 'auto', bwrapPath: refusing });
      expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'still runs' }));
      expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'again' }));
      const health = await backend.health();
      expect(health.ok).toBe(true);
      expect(health.isolation).toMatchObject({ requested: 'auto', active: 'process' });
      expect(health.isolation.reason).toContain('setting up uid map: Permission denied');
    });
    const ours = warnings.filter((w) => (w as { code?: string }).code === 'KB_PLUGIN_SANDBOX_UNAVAILABLE' && w.message.includes('setting up uid map: Permission denied'));
    expect(ours).toHaveLength(1);
  });

  it("'required' where the probe fails: every execute() is WORKER_CRASHED (reason sandbox) naming why; health() is not ok", async () => {
    // A real executable that refuses, as bwrap does where namespaces are not allowed.
    const refusing = path.join(scratch, 'refusing-bwrap');
    await writeFile(refusing, '#!/bin/sh\necho "bwrap: No permissions to create new namespace" >&2\nexit 1\n');
    await chmod(refusing, 0o755);
    const backend = make({ sandbox: 'required', bwrapPath: refusing });
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'x' });
    expectError(result, 'WORKER_CRASHED');
    expect(result.error.details).toMatchObject({ reason: 'sandbox' });
    expect(result.error.message).toContain('No permissions to create new namespace');
    const health = await backend.health();
    expect(health.ok).toBe(false);
    expect(health.problems.join('\n')).toContain("sandbox: 'required' but unavailable");
    expect(health.isolation.active).toBe('process');
  });

  it("a probe that fails for a passing shortage (EAGAIN: processes used up for a moment) runs nothing unsandboxed under 'auto', and is tried again at the next execution, by every backend", async () => {
    // bwrap as it answers while the sandbox user's processes are used up (a fork bomb in another
    // sandbox, a pids limit), for as long as the `short` file is there; the real bwrap after.
    const short = path.join(scratch, 'short-of-processes');
    await writeFile(short, '');
    const shortBwrap = path.join(scratch, 'short-bwrap');
    const real = spawnSync('sh', ['-c', 'command -v bwrap'], { encoding: 'utf8' }).stdout.trim();
    await writeFile(shortBwrap, `#!/bin/sh\nif [ -e ${short} ]; then echo "bwrap: Creating new namespace failed: Resource temporarily unavailable" >&2; exit 1; fi\nexec ${real} "$@"\n`);
    await chmod(shortBwrap, 0o755);
    const first = make({ sandbox: 'auto', bwrapPath: shortBwrap });
    const refused = await first.execute({ pluginId: BASIC, handlerId: 'echo', input: 'x' });
    expectError(refused, 'WORKER_CRASHED');
    expect(refused.error.details).toMatchObject({ reason: 'sandbox' });
    expect(refused.error.message).toMatch(/was not started: bubblewrap could not create a sandbox just now.*Resource temporarily unavailable \(a passing shortage, it seems: the next execution tries again\)$/);
    expect((await first.health()).problems.join('\n')).toContain('the sandbox cannot be set up now');
    await rm(short);
    // The same configuration, probed again: by the backend that met the shortage, and by a new one.
    for (const backend of [first, make({ sandbox: 'auto', bwrapPath: shortBwrap })]) {
      expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'y' }));
      expect((await backend.health()).isolation.active).toBe('bubblewrap');
    }
  });

  it('a sandbox that fails to set up for one child is told apart from a plugin crash (reason sandbox, bwrap’s words kept)', async () => {
    // Passes the probe (runs the real bwrap for `node -e 0`), then fails as bwrap does when the
    // kernel runs out of namespaces.
    const flaky = path.join(scratch, 'flaky-bwrap');
    const real = (await import('node:child_process')).execFileSync('sh', ['-c', 'command -v bwrap'], { encoding: 'utf8' }).trim();
    await writeFile(flaky, `#!/bin/sh\nfor last; do :; done\nif [ "$last" = "0" ]; then exec ${real} "$@"; fi\necho "bwrap: Creating new namespace failed: No space left on device" >&2\nexit 1\n`);
    await chmod(flaky, 0o755);
    const backend = make({ sandbox: 'required', bwrapPath: flaky });
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'x' });
    expectError(result, 'WORKER_CRASHED');
    expect(result.error.details).toMatchObject({ reason: 'sandbox', exitCode: 1 });
    expect(String(result.error.details.stderrTail)).toContain('No space left on device');
    expect((await backend.stats()).runners).toMatchObject({ crashed: { sandbox: 1, 'start-failed': 0 } });
  });
  it('an execution stopped while the first sandbox probe runs starts no child once the probe is done', async () => {
    // bubblewrap that answers only once `go` is there: the probe waits, the execution waits for it.
    // A folder the probe may write in (it runs as the sandbox user on a root host).
    const marks = await mkdtemp(path.join(scratch, 'probe-marks-'));
    await chmod(marks, 0o777);
    const go = path.join(marks, 'go');
    const probing = path.join(marks, 'probing');
    const waitingBwrap = path.join(scratch, 'waiting-bwrap');
    const real = spawnSync('sh', ['-c', 'command -v bwrap'], { encoding: 'utf8' }).stdout.trim();
    await writeFile(waitingBwrap, `#!/bin/sh\ntouch ${probing}\nwhile [ ! -e ${go} ]; do sleep 0.02; done\nexec ${real} "$@"\n`);
    await chmod(waitingBwrap, 0o755);
    const backend = make({ sandbox: 'required', bwrapPath: waitingBwrap });
    const controller = new AbortController();
    const pending = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'x' }, { signal: controller.signal });
    // The probe is made on first use: the execution waits for it now.
    while (!(await stat(probing).catch(() => undefined))) await new Promise((resolve) => setTimeout(resolve, 10));
    controller.abort();
    expectError(await pending, 'ABORTED');
    await writeFile(go, '');
    // stats() waits for the probe, after the execution that waited for it first.
    expect((await backend.stats()).runners).toMatchObject({ spawned: 0, killed: 0, live: 0 });
  });
});

describe.runIf(linux)('inside the sandbox', () => {
  it('stats() says children run sandboxed before any execution or health() call', async () => {
    expect((await make({ sandbox: 'required' }).stats()).runners).toMatchObject({ sandboxed: true });
  });

  it('an entry made, after registration, a link to a link inside the folder that leads out is refused naming where it leads (the target is not in the sandbox to be read)', async () => {
    const dir = await mkdtemp(path.join(scratch, 'late-link-'));
    const away = await mkdtemp(path.join(scratch, 'away-'));
    await chmod(dir, 0o755);
    await mkdir(path.join(dir, 'handlers'), { mode: 0o755 });
    await writeFile(path.join(dir, 'kb.plugin.json'), JSON.stringify({ id: '@sandbox/late-link', version: '1.0.0', handlers: { run: { entry: './handlers/h.mjs' } } }));
    await writeFile(path.join(away, 'evil.mjs'), "export default async () => 'outside';\n");
    // Registered before it is built: the entry is missing then.
    const backend = make({ sandbox: 'required', plugins: [dir] });
    expectError(await backend.execute({ pluginId: '@sandbox/late-link', handlerId: 'run' }), 'HANDLER_NOT_FOUND');
    await symlink(path.join(away, 'evil.mjs'), path.join(dir, 'handlers', 'inner.mjs'));
    await symlink('inner.mjs', path.join(dir, 'handlers', 'h.mjs'));
    const result = await backend.execute({ pluginId: '@sandbox/late-link', handlerId: 'run' });
    expectError(result, 'VALIDATION_ERROR');
    expect(result.error.message).toContain(`./handlers/h.mjs is a link to ${path.join(away, 'evil.mjs')}, outside the plugin folder`);
  });

  it('health() reports bubblewrap with every layer in force', async () => {
    const health = await make({ sandbox: 'required' }).health();
    expect(health.ok).toBe(true);
    expect(health.isolation.active).toBe('bubblewrap');
    expect(health.isolation.layers).toEqual(expect.arrayContaining(['bubblewrap', 'no capabilities', 'permission-model']));
    if (root) expect(health.isolation.layers).toContain('uid 65534 gid 65534');
  });

  it.runIf(process.getuid?.() === 0 && !dropsToNobody)('on a root host whose checkout uid 65534 cannot reach, children run sandboxed as root and health() says why', async () => {
    const backend = make({ sandbox: 'required' });
    const result = await backend.execute({ pluginId: PROBE, handlerId: 'whoami' });
    expectOk(result);
    expect(result.data).toMatchObject({ uid: 0, pid: 2 });
    expect((await backend.health()).isolation.reason).toContain('not as uid 65534');
  });

  it.runIf(root)('on a root host a workspace root others could list (made 0755 before the backend) is made passable only: a handler on a spare cannot list the other leases', async () => {
    const open = await mkdtemp(path.join(scratch, 'open-root-'));
    await chmod(open, 0o755);
    const plugin = await outFolderPlugin('spy', 0o755, {}, [
      "import path from 'node:path';",
      'export default async (_input, ctx) => attempt(() => fs.readdirSync(path.dirname(ctx.workspace.dir)));',
    ]);
    // The permission model off: the sandbox's own view is what is tested.
    const backend = make({ sandbox: 'required', prespawn: 1, enforcePermissions: false, plugins: [plugin], workspace: { root: open } });
    const spy = () => backend.execute({ pluginId: '@sandbox-test/spy', handlerId: 'run' });
    // A cold child sees only its own lease; the spares start after it, and see the whole root.
    expectOk(await spy());
    await sparesReady(backend, 1);
    const fromSpare = await spy();
    expectOk(fromSpare);
    expect(((await backend.stats()).runners as SubprocessRunnerStats).fromSpare).toBe(1);
    expect(fromSpare.data).toBe('EACCES');
    // Others may pass, no more (the group's bits are the host's).
    expect((await stat(open)).mode & 0o007).toBe(0o001);
  });

  it.runIf(root)('on a root host the child runs as the unprivileged sandbox user and its workspace is handed to it', async () => {
    const backend = make({ sandbox: 'required', workspace: { root: workspaceRoot } });
    const result = await backend.execute({ pluginId: PROBE, handlerId: 'whoami' });
    expectOk(result);
    expect(result.data).toMatchObject({ uid: 65534, gid: 65534, pid: 2, ppid: 1 });
    const custom = make({ sandbox: 'required', sandboxUser: { uid: 4242, gid: 4343 } });
    const other = await custom.execute({ pluginId: PROBE, handlerId: 'whoami' });
    expectOk(other);
    expect(other.data).toMatchObject({ uid: 4242, gid: 4343 });
    const asRoot = make({ sandbox: 'required', sandboxUser: false });
    const kept = await asRoot.execute({ pluginId: PROBE, handlerId: 'whoami' });
    expectOk(kept);
    expect(kept.data).toMatchObject({ uid: 0 });
    expect((await asRoot.health()).isolation.layers.some((l) => l.startsWith('uid '))).toBe(false);
  });

  it.runIf(root)('on a root host a workspace root whose folders do not exist yet is made so that the sandbox user can still reach it: the child still runs as uid 65534', async () => {
    const top = path.join(os.tmpdir(), `kb-sub-deep-${process.pid}-${Date.now()}`);
    try {
      const backend = make({ sandbox: 'required', workspace: { root: path.join(top, 'a', 'ws') } });
      const result = await backend.execute({ pluginId: PROBE, handlerId: 'whoami' });
      expectOk(result);
      expect(result.data).toMatchObject({ uid: 65534, gid: 65534 });
      expect((await backend.health()).isolation.layers).toContain('uid 65534 gid 65534');
    } finally {
      await rm(top, { recursive: true, force: true });
    }
  });

  it('host files outside the grants do not exist for the plugin (even with the permission model off)', async () => {
    const backend = make({ sandbox: 'required', enforcePermissions: false });
    const secret = path.join(outside, 'secret.txt');
    const input = { paths: [secret, '/etc/group', os.homedir(), probePlugin], read: ['/etc/passwd', '/etc/hosts'] };
    const result = await backend.execute({ pluginId: PROBE, handlerId: 'look-around', input });
    expectOk(result);
    const data = result.data as { root: string[]; etc: string[]; exists: Record<string, boolean>; texts: Record<string, string>; hostname: string };
    expect(data.exists).toEqual({ [secret]: false, '/etc/group': false, [os.homedir()]: false, [probePlugin]: true });
    // Of the host's /etc, only its time zone (the link /etc/localtime, where the host has one);
    // /etc/passwd and /etc/hosts are the sandbox's own, naming its one user and its own lo.
    expect(data.etc).toEqual(existsSync('/etc/localtime') ? ['hosts', 'localtime', 'passwd'] : ['hosts', 'passwd']);
    const user = process.getuid!() === 0 ? 'nobody:x:65534:65534:nobody' : `sandbox:x:${process.getuid!()}:${process.getgid!()}:sandbox`;
    expect(data.texts).toEqual({ '/etc/passwd': `${user}:/tmp:/bin/sh\n`, '/etc/hosts': '127.0.0.1\tlocalhost\n::1\tlocalhost\n' });
    expect(data.root).not.toContain('home');
    expect(data.root).not.toContain('root');
    expect(data.hostname).toBe('sandbox');
  });

  it("the sandbox's own root and /dev are read-only: a child writes its own /tmp and a /dev/shm of 64 MiB, not two more tmpfs of half the machine's RAM each", async () => {
    const backend = make({ sandbox: 'required', enforcePermissions: false });
    const result = await backend.execute({ pluginId: PROBE, handlerId: 'tmpfs-writes' });
    expectOk(result);
    const data = result.data as { wrote: Record<string, string>; shmBytes: number; tmpBytes: number };
    // Before: all four written, / and /dev each a tmpfs of half the RAM.
    expect(data.wrote).toEqual({ '/x': 'EROFS', '/dev/x': 'EROFS', '/dev/shm/x': 'ok', '/tmp/x': 'ok' });
    expect(data.shmBytes).toBe(64 * 1024 * 1024);
    expect(data.tmpBytes).toBeGreaterThan(64 * 1024 * 1024);
  });

  it("allowRead: ['/'] (a trusted plugin may read everything) runs sandboxed, with the sandbox's own /dev, /proc and /tmp", async () => {
    const backend = make({ sandbox: 'required', allowRead: ['/'] });
    // The host's /tmp is not seen: the sandbox's own is mounted over it.
    const secret = path.join(outside, 'secret.txt');
    const result = await backend.execute({ pluginId: PROBE, handlerId: 'look-around', input: { paths: ['/etc/passwd', '/dev/null', '/proc/self', secret] } });
    expectOk(result);
    const data = result.data as { exists: Record<string, boolean>; hostname: string };
    expect(data.exists).toEqual({ '/etc/passwd': true, '/dev/null': true, '/proc/self': true, [secret]: false });
    expect(data.hostname).toBe('sandbox');
  });

  it('a dependency linked in from outside the plugin folder (a workspace, npm link) cannot load in the sandbox, and a warning says why, once', async () => {
    const plugin = path.join(scratch, 'linked-plugin');
    const dependency = path.join(scratch, 'linked-dependency');
    await mkdir(path.join(plugin, 'node_modules'), { recursive: true });
    await mkdir(dependency, { recursive: true });
    await writeFile(path.join(dependency, 'package.json'), JSON.stringify({ name: 'linked-dependency', version: '1.0.0', main: 'index.js' }));
    await writeFile(path.join(dependency, 'index.js'), "module.exports = 'from the linked dependency';\n");
    await symlink(dependency, path.join(plugin, 'node_modules', 'linked-dependency'));
    await writeFile(path.join(plugin, 'handler.mjs'), "import value from 'linked-dependency';\nexport default () => value;\n");
    await writeFile(path.join(plugin, 'kb.plugin.json'), JSON.stringify({ id: '@probe/linked', version: '1.0.0', handlers: { run: { entry: './handler.mjs' } } }));
    // Unsandboxed it loads: the dependency itself is fine.
    const plain = await make({ sandbox: 'off', enforcePermissions: false, plugins: [plugin] }).execute({ pluginId: '@probe/linked', handlerId: 'run' });
    expectOk(plain);
    expect(plain.data).toBe('from the linked dependency');
    const warnings = await warningsDuring(async () => {
      const backend = make({ sandbox: 'required', plugins: [plugin] });
      for (let i = 0; i < 2; i++) {
        const result = await backend.execute({ pluginId: '@probe/linked', handlerId: 'run' });
        expectError(result, 'HANDLER_ERROR');
        expect(result.error.message).toContain('linked-dependency');
      }
    });
    const ours = warnings.filter((w) => (w as { code?: string }).code === 'KB_PLUGIN_SANDBOX_HIDDEN_DEPENDENCIES');
    expect(ours).toHaveLength(1);
    expect(ours[0]!.message).toContain(`node_modules/linked-dependency -> ${dependency} lead(s) outside the plugin folder`);
    expect(ours[0]!.message).toContain('npm install --install-links');
  });

  it('a linked dependency one backend shows (allowRead) and another in the same process hides is warned of for the second', async () => {
    const plugin = path.join(scratch, 'shared-linked-plugin');
    const dependency = path.join(scratch, 'shared-linked-dependency');
    await mkdir(path.join(plugin, 'node_modules'), { recursive: true });
    await mkdir(dependency, { recursive: true });
    await writeFile(path.join(dependency, 'package.json'), JSON.stringify({ name: 'shared-linked-dependency', version: '1.0.0', main: 'index.js' }));
    await writeFile(path.join(dependency, 'index.js'), "module.exports = 'from the linked dependency';\n");
    await symlink(dependency, path.join(plugin, 'node_modules', 'shared-linked-dependency'));
    await writeFile(path.join(plugin, 'handler.mjs'), "import value from 'shared-linked-dependency';\nexport default () => value;\n");
    await writeFile(path.join(plugin, 'kb.plugin.json'), JSON.stringify({ id: '@probe/shared-linked', version: '1.0.0', handlers: { run: { entry: './handler.mjs' } } }));
    const warnings = await warningsDuring(async () => {
      // Granted: it loads, and nothing is hidden from this backend.
      const showing = await make({ sandbox: 'required', plugins: [plugin], allowRead: [dependency] }).execute({ pluginId: '@probe/shared-linked', handlerId: 'run' });
      expectOk(showing);
      // Not granted on the other backend of the host: it fails there, and is said (before, not: the folder had been checked once).
      for (let i = 0; i < 2; i++) expectError(await make({ sandbox: 'required', plugins: [plugin] }).execute({ pluginId: '@probe/shared-linked', handlerId: 'run' }), 'HANDLER_ERROR');
    });
    const ours = warnings.filter((w) => (w as { code?: string }).code === 'KB_PLUGIN_SANDBOX_HIDDEN_DEPENDENCIES');
    expect(ours).toHaveLength(1);
    expect(ours[0]!.message).toContain(`node_modules/shared-linked-dependency -> ${dependency} lead(s) outside the plugin folder`);
  });

  it("the warning of a link out of the plugin folder writes out the control characters of the link's name and where it leads", async () => {
    const plugin = path.join(scratch, 'odd-link-plugin');
    // A name a plugin ships (ESC sets a terminal's title), leading to a folder whose name holds a C1 control and a right-to-left override.
    const dependency = path.join(scratch, 'odd\u009b31m\u202edependency');
    await mkdir(path.join(plugin, 'node_modules'), { recursive: true });
    await mkdir(dependency, { recursive: true });
    await symlink(dependency, path.join(plugin, 'node_modules', 'dep\x1b]0;x\x07'));
    await writeFile(path.join(plugin, 'handler.mjs'), 'export default () => 1;\n');
    await writeFile(path.join(plugin, 'kb.plugin.json'), JSON.stringify({ id: '@probe/odd-link', version: '1.0.0', handlers: { run: { entry: './handler.mjs' } } }));
    const warnings = await warningsDuring(async () => {
      expectOk(await make({ sandbox: 'required', plugins: [plugin] }).execute({ pluginId: '@probe/odd-link', handlerId: 'run' }));
    });
    const ours = warnings.filter((w) => (w as { code?: string }).code === 'KB_PLUGIN_SANDBOX_HIDDEN_DEPENDENCIES');
    expect(ours).toHaveLength(1);
    expect(ours[0]!.message).toContain(`node_modules/dep\\x1b]0;x\\x07 -> ${path.join(scratch, 'odd\\x9b31m\\u202edependency')} lead(s) outside the plugin folder`);
    expect(ours[0]!.message).not.toMatch(/[\x00-\x1f\x7f-\x9f\u202e]/);
  });

  it('a dependency linked from outside into a node_modules folder above the plugin (a workspace package of the host) fails to load, and the error says where it is on the host and why the sandbox does not show it', async () => {
    const project = path.join(scratch, 'project-with-link');
    const dependency = path.join(scratch, 'workspace-package');
    const plugin = path.join(project, 'plugins', 'p');
    await mkdir(path.join(project, 'node_modules'), { recursive: true });
    await mkdir(plugin, { recursive: true });
    await mkdir(dependency, { recursive: true });
    await writeFile(path.join(dependency, 'package.json'), JSON.stringify({ name: 'workspace-package', version: '1.0.0', main: 'index.js' }));
    await writeFile(path.join(dependency, 'index.js'), "module.exports = 'from the workspace';\n");
    const link = path.join(project, 'node_modules', 'workspace-package');
    await symlink(dependency, link);
    await writeFile(path.join(plugin, 'handler.mjs'), "import value from 'workspace-package';\nexport default () => value;\n");
    await writeFile(path.join(plugin, 'kb.plugin.json'), JSON.stringify({ id: '@probe/above', version: '1.0.0', handlers: { run: { entry: './handler.mjs' } } }));
    expectOk(await make({ sandbox: 'off', enforcePermissions: false, plugins: [plugin] }).execute({ pluginId: '@probe/above', handlerId: 'run' }));
    const result = await make({ sandbox: 'required', plugins: [plugin] }).execute({ pluginId: '@probe/above', handlerId: 'run' });
    expectError(result, 'HANDLER_ERROR');
    expect(result.error.message).toContain("Cannot find package 'workspace-package'");
    expect(result.error.message).toContain(`(on the host, ${link} is a link to ${dependency}, which the bubblewrap sandbox does not show`);
    // Granted, it loads: the note is only for what the sandbox hides.
    expectOk(await make({ sandbox: 'required', plugins: [plugin], allowRead: [dependency] }).execute({ pluginId: '@probe/above', handlerId: 'run' }));
  });

  it('a dependency linked into a node_modules folder above the plugin (pnpm in a monorepo) loads in the sandbox, with no warning', async () => {
    const mono = path.join(scratch, 'mono');
    const stored = path.join(mono, 'node_modules', '.pnpm', 'stored-dependency');
    const plugin = path.join(mono, 'plugins', 'p');
    await mkdir(path.join(plugin, 'node_modules'), { recursive: true });
    await mkdir(stored, { recursive: true });
    await writeFile(path.join(stored, 'package.json'), JSON.stringify({ name: 'stored-dependency', version: '1.0.0', main: 'index.js' }));
    await writeFile(path.join(stored, 'index.js'), "module.exports = 'from the store';\n");
    await symlink(path.relative(path.join(plugin, 'node_modules'), stored), path.join(plugin, 'node_modules', 'stored-dependency'));
    await writeFile(path.join(plugin, 'handler.mjs'), "import value from 'stored-dependency';\nexport default () => value;\n");
    await writeFile(path.join(plugin, 'kb.plugin.json'), JSON.stringify({ id: '@probe/stored', version: '1.0.0', handlers: { run: { entry: './handler.mjs' } } }));
    const warnings = await warningsDuring(async () => {
      const result = await make({ sandbox: 'required', plugins: [plugin] }).execute({ pluginId: '@probe/stored', handlerId: 'run' });
      expectOk(result);
      expect(result.data).toBe('from the store');
    });
    expect(warnings.filter((w) => (w as { code?: string }).code === 'KB_PLUGIN_SANDBOX_HIDDEN_DEPENDENCIES')).toEqual([]);
  });

  it('a process killed by a signal is reported as that signal, not as bubblewrap’s exit code 128+N', async () => {
    const result = await make({ sandbox: 'required' }).execute({ pluginId: HOSTILE, handlerId: 'kill-self' });
    expectError(result, 'WORKER_CRASHED');
    expect(result.error.details).toMatchObject({ reason: 'signal', signal: 'SIGKILL', exitCode: null });
  });

  it('the host network only for a handler that declared and was granted it', async () => {
    let connections = 0;
    const server = net.createServer((socket) => {
      connections++;
      socket.resume();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as net.AddressInfo;
    try {
      const target = { host: '127.0.0.1', port };
      const undeclared = await make({ sandbox: 'required', permissions: { network: true } }).execute({ pluginId: PROBE, handlerId: 'connect-undeclared', input: target });
      expectOk(undeclared);
      expect(undeclared.data).toMatchObject({ connected: false });
      // What a plugin developed on another backend meets: `fetch failed`, and why.
      const fetched = await make({ sandbox: 'required', permissions: { network: true } }).execute({ pluginId: PROBE, handlerId: 'fetch-undeclared', input: { url: `http://127.0.0.1:${port}/` } });
      expectError(fetched, 'HANDLER_ERROR');
      expect(fetched.error.message).toMatch(/fetch failed.*; it failed on the network \(ECONNREFUSED\) in the sandbox, which gives a handler whose manifest does not declare "network": true a network of its own/s);
      const notGranted = await make({ sandbox: 'required' }).execute({ pluginId: PROBE, handlerId: 'connect', input: target });
      expectError(notGranted, 'PERMISSION_DENIED');
      expect(connections).toBe(0);
      const granted = await make({ sandbox: 'required', permissions: { network: true } }).execute({ pluginId: PROBE, handlerId: 'connect', input: target });
      expectOk(granted);
      expect(granted.data).toEqual({ connected: true });
      expect(connections).toBe(1);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('a host that cannot take the sandbox uid (a user namespace mapping only uid 0) falls back saying which uid and option', () => {
    const host = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'nested-host.mjs');
    const dist = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'index.js');
    const nested = spawnSync('bwrap', ['--dev-bind', '/', '/', '--unshare-user', '--uid', '0', '--gid', '0', '--unshare-pid', '--proc', '/proc', '--', process.execPath, host, pathToFileURL(dist).href, fixturePlugins.basic], {
      encoding: 'utf8',
      env: { PATH: process.env.PATH ?? '' },
      timeout: 30_000,
    });
    expect(nested.status, nested.stderr).toBe(0);
    const isolation = JSON.parse(nested.stdout.trim().split('\n').at(-1)!) as { active: string; reason: string };
    expect(isolation.active).toBe('process');
    // Before: "bubblewrap cannot be started: spawn EINVAL", naming neither.
    expect(isolation.reason).toContain('bubblewrap cannot be started as uid 65534 (sandboxUser;');
  });

  it('a Unix socket the host serves in a folder the child may read is reached only with the network granted', async () => {
    const folder = await mkdtemp(path.join(os.tmpdir(), 'kb-unix-socket-'));
    const socketPath = path.join(folder, 'service.sock');
    let connections = 0;
    const server = net.createServer((socket) => {
      connections++;
      socket.resume();
    });
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    await chmod(socketPath, 0o777);
    try {
      // Before: connected, with no network grant (a socket file is not in the network namespace).
      const undeclared = await make({ sandbox: 'required', allowRead: [folder] }).execute({ pluginId: PROBE, handlerId: 'connect-undeclared', input: { path: socketPath } });
      expectOk(undeclared);
      expect(undeclared.data).toEqual({ connected: false, error: 'EACCES' });
      expect(connections).toBe(0);
      const granted = await make({ sandbox: 'required', allowRead: [folder], permissions: { network: true } }).execute({ pluginId: PROBE, handlerId: 'connect', input: { path: socketPath } });
      expectOk(granted);
      expect(granted.data).toEqual({ connected: true });
      expect(connections).toBe(1);
      // Nor a datagram socketpair, whose sockets may sendto() any socket file (here from a program
      // the handler runs; before, the datagram arrived), nor a SOCK_RAW one, which the kernel makes
      // a datagram pair; nor a vsock socket (its ports are the machine's, not the namespace's).
      // A stream pair, Node's stdio, still works, as do Internet sockets on the sandbox's own lo.
      const perl = [
        'use Socket;',
        'for my $t (SOCK_DGRAM, SOCK_RAW, SOCK_STREAM) { print socketpair(my $a, my $b, AF_UNIX, $t, 0) ? "pair $t ok\\n" : "pair $t: $!\\n" }',
        'print socket(my $v, 40, SOCK_STREAM, 0) ? "vsock ok\\n" : "vsock: $!\\n";',
        'print socket(my $i, AF_INET, SOCK_STREAM, 0) ? "inet ok\\n" : "inet: $!\\n";',
      ].join(' ');
      const sent = await make({ sandbox: 'required', allowRead: [folder], permissions: { childProcess: true } }).execute({ pluginId: PROBE, handlerId: 'runs', input: { file: 'perl', args: ['-e', perl] } });
      expectOk(sent);
      expect((sent.data as { stdout: string }).stdout.trim().split('\n')).toEqual(['pair 2: Permission denied', 'pair 3: Permission denied', 'pair 1 ok', 'vsock: Permission denied', 'inet ok']);
    } finally {
      await new Promise((resolve) => server.close(resolve));
      await rm(folder, { recursive: true, force: true });
    }
  });

  it('declared fs.write folders exist and are writable by the sandbox user; files land on the host', async () => {
    const backend = make({ sandbox: 'required', permissions: { fs: { write: ['out'] } } });
    const result = await backend.execute({ pluginId: PROBE, handlerId: 'write-plugin-out', input: { path: 'out/sandboxed.txt', text: 'from inside' } });
    expectOk(result);
    const written = await stat(path.join(probePlugin, 'out', 'sandboxed.txt'));
    if (root) expect(written.uid).toBe(65534);
    await rm(path.join(probePlugin, 'out'), { recursive: true, force: true });
  });

  it('no file is made setuid or setgid in a folder the plugin writes (a way in for local users, as the sandbox user or the host\'s): EPERM, however it tries', async () => {
    const permissions = { fs: { write: ['out'] }, childProcess: true };
    const plugin = await outFolderPlugin('set-id', 0o755, permissions, [
      "import { spawnSync } from 'node:child_process';",
      'export default () => {',
      "  fs.writeFileSync(at('prog'), '#!/bin/sh\\nid\\n');",
      '  return {',
      "    setuid: attempt(() => fs.chmodSync(at('prog'), 0o4755)),",
      "    setgid: attempt(() => fs.chmodSync(at('prog'), 0o2755)),",
      "    created: attempt(() => fs.closeSync(fs.openSync(at('created'), 'w', 0o4755))),",
      "    shell: spawnSync('chmod', ['u+s', fs.realpathSync(at('prog'))], { encoding: 'utf8' }).stderr.trim(),",
      "    plain: attempt(() => fs.chmodSync(at('prog'), 0o750)),",
      '  };',
      '};',
    ]);
    const backend = make({ sandbox: 'required', plugins: [plugin], permissions, workspace: false });
    const result = await backend.execute({ pluginId: '@sandbox-test/set-id', handlerId: 'run' });
    expectOk(result);
    expect(result.data).toEqual({ setuid: 'EPERM', setgid: 'EPERM', created: 'EPERM', shell: expect.stringMatching(/Operation not permitted/), plain: 'done' });
    expect((await stat(path.join(plugin, 'out', 'prog'))).mode & 0o7777).toBe(0o750);
    await expect(stat(path.join(plugin, 'out', 'created'))).rejects.toThrow(/ENOENT/);
    expect((await backend.health()).isolation?.layers).toContain('seccomp: no setuid or setgid files, no kernel keyrings, no Unix or vsock sockets without network');
  });

  it('a write folder made under a setgid folder does not pass the bit on: folders made in it can be chmod-ed and copied as anywhere else', async () => {
    const permissions = { fs: { write: ['out'] } };
    const plugin = await outFolderPlugin('setgid', 0o2755, permissions, [
      'export default () => {',
      "  fs.mkdirSync(at('made'));",
      "  const mode = (fs.statSync(at('made')).mode & 0o7777).toString(8);",
      "  const copy = attempt(() => fs.cpSync(at('made'), at('copied'), { recursive: true }));",
      "  return { mode, copy, chmod: attempt(() => fs.chmodSync(at('made'), fs.statSync(at('made')).mode | 0o200)) };",
      '};',
    ]);
    const backend = make({ sandbox: 'required', plugins: [plugin], permissions, workspace: false });
    const result = await backend.execute({ pluginId: '@sandbox-test/setgid', handlerId: 'run' });
    expectOk(result);
    expect(result.data).toEqual({ mode: '755', copy: 'done', chmod: 'done' });
    expect((await stat(path.join(plugin, 'out'))).mode & 0o2000).toBe(0);
  });

  it('a declared fs.write path that is a file is writable as it is, sandboxed or not (not taken for a folder to make)', async () => {
    const plugin = await mkdtemp(path.join(scratch, 'file-write-plugin-'));
    await chmod(plugin, 0o755);
    await writeFile(path.join(plugin, 'handler.mjs'), "import { appendFileSync } from 'node:fs';\nexport default () => { appendFileSync(new URL('./counter.txt', import.meta.url), 'x'); return 'appended'; };\n");
    const handlers = { run: { entry: './handler.mjs', permissions: { fs: { write: ['counter.txt'] } } } };
    await writeFile(path.join(plugin, 'kb.plugin.json'), JSON.stringify({ id: '@sandbox-test/file-write', version: '1.0.0', handlers }));
    await writeFile(path.join(plugin, 'counter.txt'), '', { mode: 0o666 });
    for (const sandbox of ['required', 'off'] as const) {
      const backend = make({ sandbox, plugins: [plugin], permissions: { fs: { write: ['counter.txt'] } }, workspace: false });
      const result = await backend.execute({ pluginId: '@sandbox-test/file-write', handlerId: 'run' });
      expectOk(result);
    }
    expect((await stat(path.join(plugin, 'counter.txt'))).isFile()).toBe(true);
    expect(await readFile(path.join(plugin, 'counter.txt'), 'utf8')).toBe('xx');
  });

  it('a declared fs.write file that is a hard link (to a file outside, as a package store links copies) or a FIFO is refused (PERMISSION_DENIED): the other file is neither written nor handed over', async () => {
    const plugin = await mkdtemp(path.join(scratch, 'hardlink-plugin-'));
    await chmod(plugin, 0o755);
    const outside = path.join(await mkdtemp(path.join(scratch, 'hardlink-target-')), 'host-owned.js');
    await writeFile(outside, 'module.exports = "host code";\n', { mode: 0o644 });
    await link(outside, path.join(plugin, 'state.js'));
    spawnSync('mkfifo', [path.join(plugin, 'pipe')]);
    await writeFile(path.join(plugin, 'handler.mjs'), "import { writeFileSync } from 'node:fs';\nexport default (input) => { writeFileSync(new URL(input.file, import.meta.url), 'PWNED'); return 'wrote'; };\n");
    const handlers = { state: { entry: './handler.mjs', permissions: { fs: { write: ['state.js'] } } }, pipe: { entry: './handler.mjs', permissions: { fs: { write: ['pipe'] } } } };
    await writeFile(path.join(plugin, 'kb.plugin.json'), JSON.stringify({ id: '@sandbox-test/hardlink', version: '1.0.0', handlers }));
    const before = await stat(outside);
    for (const sandbox of ['required', 'off'] as const) {
      const backend = make({ sandbox, plugins: [plugin], permissions: { fs: { write: ['state.js', 'pipe'] } }, workspace: false });
      const linked = await backend.execute({ pluginId: '@sandbox-test/hardlink', handlerId: 'state', input: { file: './state.js' } });
      expectError(linked, 'PERMISSION_DENIED');
      expect(linked.error.message).toBe('The plugin\'s fs.write path "state.js" is a hard link (a file with 2 names: writing it writes the others, which may lie outside the plugin folder): refused');
      const fifo = await backend.execute({ pluginId: '@sandbox-test/hardlink', handlerId: 'pipe', input: { file: './pipe' } });
      expectError(fifo, 'PERMISSION_DENIED');
      expect(fifo.error.message).toContain('is not a regular file');
    }
    const after = await stat(outside);
    expect([after.uid, after.gid, after.mode]).toEqual([before.uid, before.gid, before.mode]);
    expect(await readFile(outside, 'utf8')).toBe('module.exports = "host code";\n');
  });

  it('a declared fs folder that is a symbolic link out of the plugin folder is refused (PERMISSION_DENIED): nothing of its target is bound, made or handed over', async () => {
    const plugin = await mkdtemp(path.join(scratch, 'linked-plugin-'));
    const target = await mkdtemp(path.join(scratch, 'link-target-'));
    await writeFile(path.join(plugin, 'handler.mjs'), "import { writeFileSync } from 'node:fs';\nexport default () => { writeFileSync('out/pwned.txt', 'x'); return 'wrote'; };\n");
    const handlers = {
      write: { entry: './handler.mjs', permissions: { fs: { write: ['out'] } } },
      read: { entry: './handler.mjs', permissions: { fs: { read: ['data'] } } },
      nested: { entry: './handler.mjs', permissions: { fs: { write: ['link/made-by-host'] } } },
    };
    await writeFile(path.join(plugin, 'kb.plugin.json'), JSON.stringify({ id: '@sandbox-test/linked', version: '1.0.0', handlers }));
    for (const name of ['out', 'data', 'link']) await symlink(target, path.join(plugin, name));
    const before = await stat(target);
    for (const prespawn of [0, 1]) {
      const backend = make({ sandbox: 'required', prespawn, plugins: [plugin], permissions: { fs: { read: ['data'], write: ['out', 'link/made-by-host'] } } });
      for (const [handlerId, resource] of [['write', 'fs.write:out'], ['read', 'fs.read:data'], ['nested', 'fs.write:link/made-by-host']]) {
        const result = await backend.execute({ pluginId: '@sandbox-test/linked', handlerId: handlerId! });
        expectError(result, 'PERMISSION_DENIED');
        expect(result.error.message).toContain('leads outside the plugin folder');
        expect(result.error.details).toMatchObject({ resource });
      }
    }
    expect(await readdir(target)).toEqual([]);
    const after = await stat(target);
    expect([after.uid, after.gid, after.mode]).toEqual([before.uid, before.gid, before.mode]);
  });

  it('a declared fs path through a link that stays inside the plugin folder is refused too (where it leads can change before the bind), and a package.json that is a link is never followed', async () => {
    const plugin = await mkdtemp(path.join(scratch, 'inner-link-plugin-'));
    await chmod(plugin, 0o755);
    const secret = await mkdtemp(path.join(scratch, 'secret-'));
    await writeFile(path.join(secret, 'secret.txt'), 'host secret');
    await writeFile(
      path.join(plugin, 'handler.mjs'),
      "import { readFileSync } from 'node:fs';\nexport default (input) => { try { return readFileSync(input.file, 'utf8'); } catch (error) { return error.code; } };\n",
    );
    const handlers = { nested: { entry: './handler.mjs', permissions: { fs: { write: ['lnk/sub'] } } }, read: { entry: './handler.mjs' } };
    await writeFile(path.join(plugin, 'kb.plugin.json'), JSON.stringify({ id: '@sandbox-test/inner-link', version: '1.0.0', handlers }));
    await mkdir(path.join(plugin, 'out'));
    await symlink('out', path.join(plugin, 'lnk'));
    // Shipped as a link to a host file: it must not be granted or bound.
    await symlink(path.join(secret, 'secret.txt'), path.join(plugin, 'package.json'));
    const backend = make({ sandbox: 'required', plugins: [plugin], permissions: { fs: { write: ['lnk/sub'] } } });
    const nested = await backend.execute({ pluginId: '@sandbox-test/inner-link', handlerId: 'nested', input: { file: 'x' } });
    expectError(nested, 'PERMISSION_DENIED');
    expect(nested.error.message).toContain('passes through a symbolic link');
    expect(nested.error.details).toMatchObject({ resource: 'fs.write:lnk/sub' });
    const read = await backend.execute({ pluginId: '@sandbox-test/inner-link', handlerId: 'read', input: { file: path.join(plugin, 'package.json') } });
    expectOk(read);
    expect(read.data).not.toBe('host secret');
    expect((await backend.health()).isolation.reason).not.toContain('not as uid');
  });

  it("the package.json of a folder above the plugin is shown to the child, unless it is a link: where that leads is never bound", async () => {
    const secret = await mkdtemp(path.join(scratch, 'secret-'));
    await writeFile(path.join(secret, 'secret.txt'), 'host secret');
    const read = "import { readFileSync } from 'node:fs';\nexport default (input) => { try { return readFileSync(input.file, 'utf8'); } catch (error) { return error.code; } };\n";
    const releases: Record<string, string> = {};
    for (const kind of ['file', 'link'] as const) {
      const release = await mkdtemp(path.join(scratch, `scope-${kind}-`));
      await chmod(release, 0o755);
      const plugin = path.join(release, 'plugin');
      await mkdir(plugin, { mode: 0o755 });
      await writeFile(path.join(plugin, 'handler.mjs'), read);
      await writeFile(path.join(plugin, 'kb.plugin.json'), JSON.stringify({ id: `@sandbox-test/scope-${kind}`, version: '1.0.0', handlers: { read: { entry: './handler.mjs' } } }));
      if (kind === 'file') await writeFile(path.join(release, 'package.json'), JSON.stringify({ name: 'release', type: 'module' }));
      else await symlink(path.join(secret, 'secret.txt'), path.join(release, 'package.json'));
      releases[kind] = release;
    }
    const backend = make({ sandbox: 'required', plugins: [path.join(releases.file!, 'plugin'), path.join(releases.link!, 'plugin')] });
    const shown = await backend.execute({ pluginId: '@sandbox-test/scope-file', handlerId: 'read', input: { file: path.join(releases.file!, 'package.json') } });
    expectOk(shown);
    expect(shown.data).toBe(JSON.stringify({ name: 'release', type: 'module' }));
    const linked = await backend.execute({ pluginId: '@sandbox-test/scope-link', handlerId: 'read', input: { file: path.join(releases.link!, 'package.json') } });
    expectOk(linked);
    // Neither bound nor granted: not there in the sandbox's view, and refused by the permission model.
    expect(linked.data).not.toBe('host secret');
    expect(linked.data).toMatch(/^(ENOENT|ERR_ACCESS_DENIED)$/);
  });

  it.runIf(root)("a folder the plugin ships that the sandbox user cannot read is refused (PERMISSION_DENIED), never a reason to run the child as the host's user", async () => {
    const plugin = await mkdtemp(path.join(scratch, 'closed-plugin-'));
    await chmod(plugin, 0o755);
    await writeFile(path.join(plugin, 'handler.mjs'), 'export default () => process.getuid();\n');
    await writeFile(path.join(plugin, 'kb.plugin.json'), JSON.stringify({ id: '@sandbox-test/closed', version: '1.0.0', handlers: { run: { entry: './handler.mjs', permissions: { fs: { read: ['closed'] } } } } }));
    await mkdir(path.join(plugin, 'closed'), { mode: 0o700 });
    const backend = make({ sandbox: 'required', plugins: [plugin], permissions: { fs: { read: ['closed'] } } });
    const result = await backend.execute({ pluginId: '@sandbox-test/closed', handlerId: 'run' });
    expectError(result, 'PERMISSION_DENIED');
    expect(result.error.message).toContain('a path inside the plugin folder that the sandbox user cannot use');
    expect((await backend.health()).isolation.reason).not.toContain('not as uid');
  });

  it.runIf(root)("a Node the sandbox user cannot reach (nvm or npx under a 0700 folder) still runs sandboxed, as the host's user, and says so", async () => {
    const closed = await mkdtemp(path.join(scratch, 'closed-node-'));
    await chmod(closed, 0o700);
    const node = path.join(closed, 'node');
    await copyFile(process.execPath, node);
    await chmod(node, 0o755);
    const backend = make({ sandbox: 'required', execPath: node });
    const result = await backend.execute({ pluginId: PROBE, handlerId: 'whoami' });
    expectOk(result);
    expect((result.data as { uid: number }).uid).toBe(0);
    const health = await backend.health();
    expect(health.isolation.active).toBe('bubblewrap');
    expect(health.isolation.reason).toContain(`not as uid 65534: ${closed} does not let uid 65534 pass`);
  });

  it("an execPath that cannot run in the sandbox is named as the reason, not bubblewrap: a wrapper script (its interpreter is not there); a program that is no Node is refused before", async () => {
    const folder = await mkdtemp(path.join(scratch, 'exec-path-'));
    await chmod(folder, 0o755);
    const wrapper = path.join(folder, 'node-wrapper.sh');
    await writeFile(wrapper, `#!/bin/sh\nexec ${process.execPath} "$@"\n`);
    await chmod(wrapper, 0o755);
    const script = await make({ sandbox: 'auto', execPath: wrapper }).health();
    expect(script.isolation.active).toBe('process');
    // Before: "bubblewrap cannot create a sandbox here …: bwrap: execvp …: No such file or directory".
    expect(script.isolation.reason).toBe(`execPath ${wrapper} is a script (#!/bin/sh): a sandbox holds execPath and the libraries ldd lists for it, not a script's interpreter; give execPath as a Node binary`);
    // A program that is no Node is refused when the backend is made (asked which Node it is), before any sandbox.
    expect(() => make({ sandbox: 'auto', execPath: '/bin/false' })).toThrow('execPath /bin/false did not say which Node it is and which flags it takes (it exited with code 1 without a word): execPath must be a Node binary');
  });

  it('a plugin folder moved away under the running host is HANDLER_NOT_FOUND saying so, not a crashed child', async () => {
    const plugin = await mkdtemp(path.join(scratch, 'moving-plugin-'));
    await chmod(plugin, 0o755);
    await writeFile(path.join(plugin, 'handler.mjs'), 'export default () => "here";\n');
    await writeFile(path.join(plugin, 'kb.plugin.json'), JSON.stringify({ id: '@sandbox-test/moving', version: '1.0.0', handlers: { run: { entry: './handler.mjs' } } }));
    const backend = make({ sandbox: 'required', plugins: [plugin], workspace: false });
    expectOk(await backend.execute({ pluginId: '@sandbox-test/moving', handlerId: 'run' }));
    await rename(plugin, `${plugin}-away`);
    try {
      const result = await backend.execute({ pluginId: '@sandbox-test/moving', handlerId: 'run' });
      expectError(result, 'HANDLER_NOT_FOUND');
      expect(result.error.message).toBe(`Handler "run" of plugin "@sandbox-test/moving": its plugin folder ${plugin} does not exist (moved or deleted while the host runs)`);
    } finally {
      await rename(`${plugin}-away`, plugin);
    }
    expectOk(await backend.execute({ pluginId: '@sandbox-test/moving', handlerId: 'run' }));
  });

  it('a workspace root or plugin folder under /dev (/dev/shm) is refused naming it: the sandbox has a /dev of its own, where it never was', async () => {
    const shm = await mkdtemp('/dev/shm/kb-sandbox-test-');
    try {
      const root = path.join(shm, 'workspaces');
      const backend = make({ sandbox: 'required', workspace: { root } });
      const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 });
      expectError(result, 'VALIDATION_ERROR');
      expect(result.error.message).toBe(`The workspace root ${root} lies under /dev, which the bubblewrap sandbox replaces with its own: no handler could see its workspace. Choose a root elsewhere (workspace: { root }), or use sandbox: 'off'`);
      expect(result.error.details).toMatchObject({ path: 'workspace.root' });
      expect((await backend.health()).problems).toContain(result.error.message);
      const plugin = path.join(shm, 'plugin');
      await mkdir(plugin);
      await writeFile(path.join(plugin, 'handler.mjs'), 'export default () => "here";\n');
      await writeFile(path.join(plugin, 'kb.plugin.json'), JSON.stringify({ id: '@sandbox-test/in-shm', version: '1.0.0', handlers: { run: { entry: './handler.mjs' } } }));
      const shmBackend = make({ sandbox: 'required', plugins: [plugin], workspace: false });
      const inShm = await shmBackend.execute({ pluginId: '@sandbox-test/in-shm', handlerId: 'run' });
      expectError(inShm, 'VALIDATION_ERROR');
      expect(inShm.error.message).toContain(`The plugin folder ${plugin} lies under /dev, which the bubblewrap sandbox replaces with its own: its handlers cannot load there`);
      expect((await shmBackend.health()).problems).toContain(inShm.error.message);
      // Off the sandbox, both are ordinary folders.
      expectOk(await make({ sandbox: 'off', workspace: { root } }).execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }));
    } finally {
      await rm(shm, { recursive: true, force: true });
    }
  });

  it('a release switched under warm spares and cold children (a link re-pointed, a folder renamed over the old one, node_modules made anew) runs from the next execution with its own dependencies, sandboxed or not', async () => {
    // A release: its package.json, a dependency in node_modules, and the plugin folder below them.
    const releases = path.join(scratch, 'releases');
    for (const version of ['v1', 'v2']) {
      const release = path.join(releases, version);
      await mkdir(path.join(release, 'node_modules', 'dep'), { recursive: true });
      await mkdir(path.join(release, 'plugin'), { recursive: true });
      await writeFile(path.join(release, 'package.json'), JSON.stringify({ name: `release-${version}`, type: 'module' }));
      await writeFile(path.join(release, 'node_modules', 'dep', 'package.json'), JSON.stringify({ name: 'dep', type: 'module', main: 'index.js' }));
      await writeFile(path.join(release, 'node_modules', 'dep', 'index.js'), `export default 'dep-${version}';\n`);
      await writeFile(path.join(release, 'plugin', 'kb.plugin.json'), JSON.stringify({ id: '@test/release', version: '1.0.0', handlers: { version: { entry: './version.js' } } }));
      await writeFile(path.join(release, 'plugin', 'version.js'), `import dep from 'dep';\nexport default async () => \`${version} with \${dep}\`;\n`);
    }
    const copy = (from: string, to: string) => cp(from, to, { recursive: true });
    const switches = {
      // The deploy re-points the link its host was given.
      link: async (at: string) => {
        await symlink(path.join(releases, 'v1'), at);
        return { expected: 'v2 with dep-v2', switchRelease: async () => {
          await symlink(path.join(releases, 'v2'), `${at}.next`);
          await rename(`${at}.next`, at);
        } };
      },
      // The deploy renames the new folder over the old one (kept aside).
      rename: async (at: string) => {
        await copy(path.join(releases, 'v1'), at);
        return { expected: 'v2 with dep-v2', switchRelease: async () => {
          await copy(path.join(releases, 'v2'), `${at}.new`);
          await rename(at, `${at}.old`);
          await rename(`${at}.new`, at);
        } };
      },
      // `npm ci`: node_modules made anew, the plugin folder untouched.
      dependencies: async (at: string) => {
        await copy(path.join(releases, 'v1'), at);
        return { expected: 'v1 with dep-v2', switchRelease: async () => {
          await rm(path.join(at, 'node_modules'), { recursive: true });
          await copy(path.join(releases, 'v2', 'node_modules'), path.join(at, 'node_modules'));
        } };
      },
    };
    for (const sandbox of ['required', 'off'] as const) {
      for (const prespawn of [1, 0]) {
        for (const [how, prepare] of Object.entries(switches)) {
          const at = path.join(scratch, `current-${sandbox}-${prespawn}-${how}`);
          const { expected, switchRelease } = await prepare(at);
          const backend = make({ sandbox, prespawn, plugins: [path.join(at, 'plugin')] });
          const before = await backend.execute({ pluginId: '@test/release', handlerId: 'version' });
          expect(before.ok ? before.data : `${before.error.code}: ${before.error.message}`).toBe('v1 with dep-v1');
          if (prespawn) await sparesReady(backend, 1);
          await switchRelease();
          const after = await backend.execute({ pluginId: '@test/release', handlerId: 'version' });
          const what = `${sandbox}, prespawn ${prespawn}, ${how}`;
          expect(after.ok ? after.data : `${after.error.code}: ${after.error.message}`, what).toBe(expected);
          // Without the sandbox a spare reads node_modules by its path, as a cold child does: one made
          // anew may even have the old one's inode (nothing holds it), and the spare serves rightly.
          if (prespawn && !(sandbox === 'off' && how === 'dependencies')) expect(((await backend.stats()).runners as SubprocessRunnerStats).spares.discarded, what).toBe(1);
        }
      }
    }
  }, 60_000);

  it('a workspace root removed behind the host (a tmp cleaner) and made anew by the next lease: a warm spare bound to the old one is not used, the execution sees its workspace', async () => {
    const ownRoot = path.join(scratch, 'root-made-anew');
    const backend = make({ sandbox: 'required', prespawn: 1, workspace: { root: ownRoot } });
    expectOk(await backend.execute({ pluginId: PROBE, handlerId: 'whoami' }));
    await sparesReady(backend, 1);
    // Empty between executions, as a tmp cleaner finds it; core's next lease makes the root again.
    await rm(ownRoot, { recursive: true });
    const after = await backend.execute({ pluginId: PROBE, handlerId: 'whoami' });
    expectOk(after);
    const data = after.data as { cwd: string; workspace: string };
    // Before: the spare's sandbox held the removed root, where the lease made since is not: the
    // handler ran outside its workspace (cwd where it booted), and one writing there failed.
    expect(data.cwd).toBe(data.workspace);
    expect(((await backend.stats()).runners as SubprocessRunnerStats).spares.discarded).toBe(1);
    const writes = await backend.execute({ pluginId: BASIC, handlerId: 'writes-workspace' }, { timeoutMs: 10_000 });
    expectOk(writes);
    expect(writes.meta.artifacts).toContain('summary.json');
  });

  it.runIf(root)('a spare whose lease cannot be handed to its user (gone meanwhile, a chown refused) is killed with the failed execution, not left waiting for a run, and replaced', async () => {
    // bwrap, a second late while the `slow` file is there: the spare taken below is still booting.
    const slow = path.join(scratch, 'slow-spares');
    const slowBwrap = path.join(scratch, 'slow-bwrap');
    const real = spawnSync('sh', ['-c', 'command -v bwrap'], { encoding: 'utf8' }).stdout.trim();
    await writeFile(slowBwrap, `#!/bin/sh\nif [ -e ${slow} ]; then sleep 1; fi\nexec ${real} "$@"\n`);
    await chmod(slowBwrap, 0o755);
    const ownRoot = path.join(scratch, 'lease-gone');
    const backend = make({ sandbox: 'required', prespawn: 1, bwrapPath: slowBwrap, workspace: { root: ownRoot } });
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }));
    await sparesReady(backend, 1);
    await writeFile(slow, '');
    // Served by the ready spare; the one booted in its place takes a second.
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 2 }));
    const failing = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 3 });
    // Its lease removed while the spare taken for it boots: handing it over to the spare's user fails.
    let lease: string | undefined;
    for (const until = Date.now() + 5000; !lease && Date.now() < until; await new Promise((r) => setTimeout(r, 5))) lease = (await readdir(ownRoot))[0];
    await rm(path.join(ownRoot, lease!), { recursive: true });
    const failed = await failing;
    expectError(failed, 'INTERNAL_ERROR');
    expect(failed.error.message).toContain(`ENOENT: no such file or directory, open '${path.join(ownRoot, lease!)}'`);
    await rm(slow);
    // Before: the spare stayed alive (and kept the host's event loop alive) until shutdown.
    const stats = async () => (await backend.stats()).runners as SubprocessRunnerStats;
    // Gone, and another booted in its place: before, none was until an execution of the profile ran cold.
    expect(await eventually(async () => (await stats()).spares.ready === 1 && (await stats()).live === 1), JSON.stringify(await stats())).toBe(true);
    expect(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 4 })).toMatchObject({ ok: true });
    expect(await stats()).toMatchObject({ fromSpare: 2 });
  });

  it('warm spares run sandboxed too, and the lease they serve is theirs', async () => {
    const backend = make({ sandbox: 'required', prespawn: 1 });
    expectOk(await backend.execute({ pluginId: PROBE, handlerId: 'whoami' }));
    const until = Date.now() + 10_000;
    while (((await backend.stats()).runners as SubprocessRunnerStats).spares.ready < 1 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    const second = await backend.execute({ pluginId: PROBE, handlerId: 'whoami' });
    expectOk(second);
    const data = second.data as { cwd: string; workspace: string; pid: number; uid: number };
    expect(((await backend.stats()).runners as SubprocessRunnerStats).fromSpare).toBe(1);
    expect(data.pid).toBe(2);
    expect(data.cwd).toBe(data.workspace);
    if (root) expect(data.uid).toBe(65534);
  });
});

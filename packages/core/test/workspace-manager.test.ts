import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { chmod, chown, cp, lchown, lstat, mkdir, mkdtemp, readdir, readFile, realpath, rename, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { WorkspaceError, WorkspaceManager } from '../src/index.js';
import { MAX_EXECUTION_ID_LENGTH, listArtifacts, unsafeExecutionIdReason } from '../src/host/workspace-manager.js';
import { removeTree } from '../src/host/remove-tree.js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

const require = createRequire(import.meta.url);
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

let base: string;
let root: string;
let counter = 0;
const children: ChildProcess[] = [];

/** The first line a host `child` prints, as JSON, once it has printed one (15 s at most); nothing on its stderr. Kept in `children` to be killed after the test. */
async function firstLine(child: ChildProcess): Promise<unknown> {
  children.push(child);
  let out = '';
  let err = '';
  child.stdout!.on('data', (chunk: Buffer) => (out += chunk));
  child.stderr!.on('data', (chunk: Buffer) => (err += chunk));
  const deadline = Date.now() + 15_000;
  while (!out.includes('\n') && child.exitCode === null && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
  expect(err).toBe('');
  return JSON.parse(out);
}

beforeAll(async () => {
  base = await mkdtemp(path.join(os.tmpdir(), 'kb-core-ws-test-'));
});

afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
  }
});

afterAll(async () => {
  // Read-only leftovers of a failed test must not break the clean-up.
  await removeTree(base);
});

async function waitForLines(lines: string[], count: number, stderr: () => string): Promise<void> {
  for (let i = 0; i < 200 && lines.length < count; i++) await new Promise((resolve) => setTimeout(resolve, 50));
  expect(lines.length, stderr()).toBeGreaterThanOrEqual(count);
}

/** What a script child wrote on stdout, once it exited 0 having written nothing on stderr. */
async function reportOf(child: ChildProcess): Promise<string> {
  children.push(child);
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d));
  child.stderr!.on('data', (d: Buffer) => (err += d));
  const [code] = await once(child, 'exit');
  expect(err).toBe('');
  expect(code).toBe(0);
  return out;
}

/** Core's dist, package.json and zod in `to` (readable by anyone); the ES module entry's path. */
async function copyCoreBuild(to: string): Promise<string> {
  const coreRoot = path.dirname(require.resolve('@kb-labs/plugin-execution-core/package.json'));
  await cp(path.join(coreRoot, 'dist'), path.join(to, 'dist'), { recursive: true });
  await cp(path.join(coreRoot, 'package.json'), path.join(to, 'package.json'));
  const zod = path.dirname(createRequire(path.join(coreRoot, 'package.json')).resolve('zod/package.json'));
  await cp(await realpath(zod), path.join(to, 'node_modules', 'zod'), { recursive: true, dereference: true });
  return path.join(to, 'dist', 'index.js');
}

async function freshRoot(): Promise<string> {
  root = path.join(base, `root-${++counter}`);
  return root;
}

const mode = async (p: string) => (await stat(p)).mode & 0o777;

async function exists(p: string): Promise<boolean> {
  try {
    await lstat(p);
    return true;
  } catch {
    return false;
  }
}

/** A pid that certainly belonged to a process that has exited (a real, short-lived child). */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  const [code] = await once(child, 'exit');
  expect(code).toBe(0);
  expect(child.pid).toBeTypeOf('number');
  return child.pid!;
}

/** Whether a process of this pid exists here. */
function pidInUse(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A pid of a process that is alive until the test ends (killed in afterEach). */
function livePid(): number {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  children.push(child);
  expect(child.pid).toBeTypeOf('number');
  return child.pid!;
}

describe('execution ids', () => {
  const unsafe: Array<[string, unknown]> = [
    ['..', '..'],
    ['a/b', 'a/b'],
    ['a\\b', 'a\\b'],
    ['NUL', 'a\0b'],
    ['absolute', '/etc'],
    ['windows absolute', 'C:\\x'],
    ['empty', ''],
    ['129 characters', 'x'.repeat(MAX_EXECUTION_ID_LENGTH + 1)],
    ['.', '.'],
    ['leading dot', '.hidden'],
    ['.. inside', 'a..b'],
    ['undefined', undefined],
    ['null', null],
    ['number', 42],
    ['object', { toString: () => 'ok' }],
    ['array', ['ok']],
    ['null-prototype object', Object.create(null)],
    ['symbol', Symbol('id')],
  ];

  it.each(unsafe)('refuses %s with WorkspaceError and creates nothing', async (_label, id) => {
    const manager = new WorkspaceManager({ root: await freshRoot() });
    const reason = unsafeExecutionIdReason(id);
    expect(reason).toBeTypeOf('string');
    const error = await manager.acquire(id as string).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WorkspaceError);
    expect((error as WorkspaceError).code).toBe('WORKSPACE_ERROR');
    expect((error as WorkspaceError).message).toContain(reason);
    expect((error as WorkspaceError).details.reason).toBe(reason);
    expect(await exists(root)).toBe(false);
  });

  it('accepts ordinary ids up to the length limit', async () => {
    const manager = new WorkspaceManager({ root: await freshRoot() });
    for (const id of ['a', 'run-1', 'A.b_c-d', '0', 'x'.repeat(MAX_EXECUTION_ID_LENGTH), '550e8400-e29b-41d4-a716-446655440000']) {
      expect(unsafeExecutionIdReason(id)).toBeUndefined();
      const lease = await manager.acquire(id);
      expect(path.dirname(lease.dir)).toBe(manager.root);
      expect(path.basename(lease.dir)).toContain(id);
      await lease.release();
    }
  });
});

describe('WorkspaceManager', () => {
  it('refuses a missing, empty or NUL root, naming the field', () => {
    for (const options of [undefined, {}, { root: '' }, { root: 'a\0b' }, { root: 42 }]) {
      expect(() => new WorkspaceManager(options as never)).toThrow(WorkspaceError);
      expect(() => new WorkspaceManager(options as never)).toThrow(expect.objectContaining({ code: 'WORKSPACE_ERROR', details: { field: 'root' } }));
    }
  });

  it('refuses an option it does not take, naming the nearest (it was ignored): in the constructor and in sweep()', async () => {
    expect(() => new WorkspaceManager({ rooot: '/tmp/x' } as never)).toThrow('WorkspaceManager does not take "rooot"; did you mean "root"? (it takes root)');
    expect(() => new WorkspaceManager({ root: '/tmp/x', maxDepth: 3 } as never)).toThrow(WorkspaceError);
    await expect(new WorkspaceManager({ root: await freshRoot() }).sweep({ foreignOlderThan: 5 } as never)).rejects.toThrow(
      'sweep() does not take "foreignOlderThan"; did you mean "foreignOlderThanMs"? (it takes foreignOlderThanMs)',
    );
  });

  it('refuses a sweep() given the age alone (plain JavaScript), naming its options, instead of sweeping as with none and keeping every foreign folder', async () => {
    const manager = new WorkspaceManager({ root: await freshRoot() });
    const mine = await manager.acquire('mine');
    const tag = /^kbx-\d+\.([0-9a-f]{8})[.-]/.exec(path.basename(mine.dir))![1]!;
    const foreign = path.join(root, `kbx-${await deadPid()}.${tag === '00000000' ? '11111111' : '00000000'}-there-abcdef12`);
    await mkdir(foreign);
    const old = new Date(Date.now() - 3 * 3600_000);
    await utimes(foreign, old, old);
    for (const given of [2 * 3600_000, '7200000', [2 * 3600_000]]) {
      await expect(manager.sweep(given as never), String(given)).rejects.toMatchObject({
        code: 'WORKSPACE_ERROR',
        message: expect.stringContaining('sweep() takes its options as an object such as { foreignOlderThanMs: 3600000 }'),
        details: { field: '(options)' },
      });
    }
    expect(await exists(foreign)).toBe(true);
    // No options (undefined or null) is still a sweep with none; the object form removes it.
    expect((await manager.sweep(null as never)).foreign).toEqual([foreign]);
    expect(await manager.sweep({ foreignOlderThanMs: 2 * 3600_000 })).toEqual({ removed: [foreign], failed: [], foreign: [], kept: [] });
    await mine.release();
  });

  it('creates a missing root (0700), the missing folders above it as mkdir -p does (0755 within the umask), and a private 0700 directory per lease', async () => {
    const nested = path.join(await freshRoot(), 'deeper', 'still');
    const manager = new WorkspaceManager({ root: nested });
    expect(await exists(nested)).toBe(false);
    const lease = await manager.acquire('exec-1');
    expect(await mode(nested)).toBe(0o700);
    // Not closed to others: the subprocess sandbox's user passes through them to its workspace.
    expect(await mode(path.dirname(nested))).toBe(0o755 & ~currentUmask());
    expect(await mode(lease.dir)).toBe(0o700);
    expect((await stat(lease.dir)).isDirectory()).toBe(true);
    expect(lease.executionId).toBe('exec-1');
    expect(path.isAbsolute(lease.dir)).toBe(true);
    expect(path.basename(lease.dir)).toMatch(new RegExp(`^kbx-${process.pid}\\.[0-9a-f]{8}(\\.s\\d+)?-exec-1-`));
    expect(lease.released).toBe(false);
    await lease.release();
    expect(lease.released).toBe(true);
    expect(await readdir(nested)).toEqual([]);
  });

  it('recreates the root if it disappears between leases', async () => {
    const manager = new WorkspaceManager({ root: await freshRoot() });
    await (await manager.acquire('one')).release();
    await rm(root, { recursive: true });
    const lease = await manager.acquire('two');
    expect(await exists(lease.dir)).toBe(true);
    expect(await mode(root)).toBe(0o700);
    await lease.release();
  });

  it('never gives two leases of the same id the same directory', async () => {
    const manager = new WorkspaceManager({ root: await freshRoot() });
    const leases = await Promise.all(Array.from({ length: 20 }, () => manager.acquire('same')));
    expect(new Set(leases.map((l) => l.dir)).size).toBe(20);
    await writeFile(path.join(leases[0]!.dir, 'mine.txt'), 'first');
    expect(await readdir(leases[1]!.dir)).toEqual([]);
    await Promise.all(leases.map((l) => l.release()));
    expect(await readdir(root)).toEqual([]);
  });

  it('release() is idempotent, also when called in parallel', async () => {
    const manager = new WorkspaceManager({ root: await freshRoot() });
    const lease = await manager.acquire('idem');
    await mkdir(path.join(lease.dir, 'a', 'b'), { recursive: true });
    await writeFile(path.join(lease.dir, 'a', 'b', 'f.txt'), 'x');
    const results = await Promise.allSettled([lease.release(), lease.release(), lease.release()]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled']);
    await expect(lease.release()).resolves.toBeUndefined();
    expect(lease.released).toBe(true);
    expect(await exists(lease.dir)).toBe(false);
  });

  it('release() succeeds when the directory is already gone', async () => {
    const manager = new WorkspaceManager({ root: await freshRoot() });
    const lease = await manager.acquire('gone');
    await rm(lease.dir, { recursive: true });
    await expect(lease.release()).resolves.toBeUndefined();
  });

  it('a removal that finds the process out of descriptors (EMFILE) tries again a little later: the directory goes, nothing is said left behind', async () => {
    const dist = path.join(path.dirname(require.resolve('@kb-labs/plugin-execution-core/package.json')), 'dist', 'index.js');
    const script = `
      const { WorkspaceManager } = await import(${JSON.stringify(pathToFileURL(dist).href)});
      const fs = await import('node:fs');
      const path = await import('node:path');
      const manager = new WorkspaceManager({ root: ${JSON.stringify(await freshRoot())} });
      const lease = await manager.acquire('emfile');
      fs.mkdirSync(path.join(lease.dir, 'a', 'b'), { recursive: true });
      fs.writeFileSync(path.join(lease.dir, 'a', 'b', 'f.txt'), 'x');
      const held = [];
      try { for (;;) held.push(fs.openSync('/dev/null', 'r')); } catch (error) { if (error.code !== 'EMFILE') throw error; }
      const releasing = lease.release();
      // The process gets its descriptors back soon after, as a host over its limit would.
      setTimeout(() => held.splice(0).forEach((fd) => fs.closeSync(fd)), 50);
      let failed = null;
      await releasing.catch((error) => (failed = error.details?.code ?? error.message));
      process.stdout.write(JSON.stringify({ failed, left: fs.existsSync(lease.dir), leftBehind: manager.leftBehind() ?? null }));
    `;
    // A low descriptor limit of its own (the shell's ulimit), so that running out is quick.
    const out = await reportOf(spawn('/bin/sh', ['-c', 'ulimit -n 128 && exec "$0" --input-type=module -e "$1"', process.execPath, script], { stdio: ['ignore', 'pipe', 'pipe'], env: {} }));
    expect(JSON.parse(out)).toEqual({ failed: null, left: false, leftBehind: null });
  });

  it('removes a folder of 120,000 files reading a few names at a time: in little memory (a 24 MB heap), not every name in one array', async () => {
    // Before, the whole folder was read into one array (120,000 Buffers made in one turn of the
    // event loop, which that held for a second and more), and this host ran out of memory there.
    const coreRoot = path.dirname(require.resolve('@kb-labs/plugin-execution-core/package.json'));
    const script = `
      const fs = await import('node:fs');
      const { WorkspaceManager } = await import(${JSON.stringify(pathToFileURL(path.join(coreRoot, 'dist', 'index.js')).href)});
      const lease = await new WorkspaceManager({ root: ${JSON.stringify(await freshRoot())} }).acquire('many-files');
      fs.mkdirSync(lease.dir + '/out');
      for (let i = 0; i < 120000; i++) fs.writeFileSync(lease.dir + '/out/f' + i, '');
      await lease.release();
      process.stdout.write(JSON.stringify({ gone: !fs.existsSync(lease.dir) }));
    `;
    const child = spawn(process.execPath, ['--max-old-space-size=24', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    expect(JSON.parse(await reportOf(child))).toEqual({ gone: true });
    expect(await readdir(root)).toEqual([]);
  }, 120_000);

  it('removes a read-only nested tree', async () => {
    const manager = new WorkspaceManager({ root: await freshRoot() });
    const lease = await manager.acquire('readonly');
    await makeReadOnlyTree(lease.dir);
    await lease.release();
    expect(await exists(lease.dir)).toBe(false);
    expect(await readdir(root)).toEqual([]);
  });

  it('removes a tree deeper than an absolute path can name (mkdir + chdir in a loop), read-only folders and links out included', async () => {
    const manager = new WorkspaceManager({ root: await freshRoot() });
    const lease = await manager.acquire('deep');
    const outside = await mkdtemp(path.join(os.tmpdir(), 'kb-core-deep-outside-'));
    await writeFile(path.join(outside, 'keep.txt'), 'keep');
    // chdir is not for threads (vitest may run this file in one): a child process builds it, as a plugin's would.
    const script = `
      const fs = require('node:fs');
      const name = 'd'.repeat(250);
      process.chdir(process.argv[1]);
      for (let i = 0; i < 40; i++) {
        fs.mkdirSync(name);
        fs.writeFileSync('f', 'x');
        if (i === 30) fs.symlinkSync(process.argv[2], 'out');
        process.chdir(name);
      }
      for (let i = 0; i < 40; i += 7) { process.chdir('..'); fs.chmodSync(name, 0o500); }
    `;
    const child = spawn(process.execPath, ['-e', script, lease.dir, outside], { stdio: 'ignore', env: {} });
    expect((await once(child, 'exit'))[0]).toBe(0);
    // Deeper than rm can reach by path.
    await expect(rm(lease.dir, { recursive: true, force: true })).rejects.toMatchObject({ code: 'ENAMETOOLONG' });
    await lease.release();
    expect(await exists(lease.dir)).toBe(false);
    expect(await readFile(path.join(outside, 'keep.txt'), 'utf8')).toBe('keep');
    await rm(outside, { recursive: true, force: true });
  });

  // As root every tree is writable, so the case above cannot fail: run it again as an ordinary user.
  it.runIf(isRoot)('removes a read-only nested tree when not running as root', async () => {
    // Its own temp folder: the shared test base is private to root.
    const unprivileged = await mkdtemp(path.join(os.tmpdir(), 'kb-core-ws-nobody-'));
    try {
      await chown(unprivileged, 65534, 65534);
      // Core's build and zod copied next to it: the checkout may lie under a folder that user cannot read.
      const distEsm = await copyCoreBuild(path.join(unprivileged, 'core'));
      const script = `
        const { WorkspaceManager } = await import(${JSON.stringify(pathToFileURL(distEsm).href)});
        const fs = await import('node:fs/promises');
        const path = await import('node:path');
        const manager = new WorkspaceManager({ root: ${JSON.stringify(path.join(unprivileged, 'root'))} });
        const lease = await manager.acquire('readonly');
        await fs.mkdir(path.join(lease.dir, 'a', 'b'), { recursive: true });
        await fs.writeFile(path.join(lease.dir, 'a', 'b', 'f.txt'), 'x');
        await fs.chmod(path.join(lease.dir, 'a', 'b', 'f.txt'), 0o400);
        await fs.chmod(path.join(lease.dir, 'a', 'b'), 0o500);
        await fs.mkdir(path.join(lease.dir, 'locked'));
        await fs.writeFile(path.join(lease.dir, 'locked', 'x'), 'x');
        await fs.chmod(path.join(lease.dir, 'locked'), 0o000);
        await fs.chmod(path.join(lease.dir, 'a'), 0o500);
        let plainRm = 'removed';
        try { await fs.rm(lease.dir, { recursive: true, force: true }); } catch (e) { plainRm = e.code; }
        await lease.release();
        const left = await fs.readdir(manager.root);
        process.stdout.write(JSON.stringify({ plainRm, left }));
      `;
      const out = await reportOf(spawn(process.execPath, ['--input-type=module', '-e', script], { uid: 65534, gid: 65534, stdio: ['ignore', 'pipe', 'pipe'] }));
      const report = JSON.parse(out) as { plainRm: string; left: string[] };
      // Proves the tree really was hard to remove: a plain rm -rf fails on it.
      expect(report.plainRm).toBe('EACCES');
      expect(report.left).toEqual([]);
    } finally {
      await removeTree(unprivileged);
    }
  });

  // A directory its user cannot remove (another user's files in it): said, not dropped.
  it.runIf(isRoot)('a lease it cannot remove is reported: release() rejects, leftBehind() says so, one process warning', async () => {
    const unprivileged = await mkdtemp(path.join(os.tmpdir(), 'kb-core-ws-left-'));
    try {
      await chown(unprivileged, 65534, 65534);
      const distEsm = await copyCoreBuild(path.join(unprivileged, 'core'));
      const script = `
        const { WorkspaceManager } = await import(${JSON.stringify(pathToFileURL(distEsm).href)});
        const warnings = [];
        process.on('warning', (w) => warnings.push(w.code));
        const manager = new WorkspaceManager({ root: ${JSON.stringify(path.join(unprivileged, 'root'))} });
        const leases = [await manager.acquire('stuck-1'), await manager.acquire('stuck-2')];
        process.stdout.write(JSON.stringify(leases.map((l) => l.dir)) + '\\n');
        await new Promise((resolve) => process.stdin.once('data', resolve));
        const errors = [];
        for (const lease of leases) await lease.release().catch((e) => errors.push(e.code));
        await new Promise((resolve) => setImmediate(resolve));
        process.stdout.write(JSON.stringify({ errors, leftBehind: manager.leftBehind(), warnings }) + '\\n');
        process.stdin.destroy();
      `;
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], { uid: 65534, gid: 65534, stdio: ['pipe', 'pipe', 'pipe'] });
      children.push(child);
      const lines: string[] = [];
      let err = '';
      child.stderr!.on('data', (d: Buffer) => (err += d));
      child.stdout!.on('data', (d: Buffer) => lines.push(...String(d).split('\n').filter(Boolean)));
      await waitForLines(lines, 1, () => err);
      // Root's folder, with a file in it, inside each lease: its user can neither empty nor remove it.
      for (const dir of JSON.parse(lines[0]!) as string[]) {
        await mkdir(path.join(dir, 'roots'));
        await writeFile(path.join(dir, 'roots', 'f'), 'x');
      }
      child.stdin!.write('go\n');
      await waitForLines(lines, 2, () => err);
      const report = JSON.parse(lines[1]!) as { errors: string[]; leftBehind: string; warnings: string[] };
      expect(err.replace(/\(node:\d+\) \[KB_PLUGIN_WORKSPACE_LEFT\][^\n]*\n(\(Use[^\n]*\n)?/g, '')).toBe('');
      expect(report.errors).toEqual(['WORKSPACE_ERROR', 'WORKSPACE_ERROR']);
      expect(report.leftBehind).toMatch(/^2 workspace directories under .* could not be removed \(the last: Cannot remove workspace .*stuck-2/);
      expect(report.warnings).toEqual(['KB_PLUGIN_WORKSPACE_LEFT']);
    } finally {
      await removeTree(unprivileged);
    }
  });

  it.runIf(process.platform === 'linux')('a plugin process still running that swaps folders and links to outside in place while its lease is removed never makes the host delete, or list, outside files', async () => {
    const outside = path.join(base, `victim-${counter++}`);
    await mkdir(outside);
    for (let i = 0; i < 50; i++) await writeFile(path.join(outside, `f${i}`), 'keep');
    const manager = new WorkspaceManager({ root: await freshRoot() });
    // Each d<i> is a folder or a link to `outside` by turns (three renames), as fast as a process can.
    const racer = `
      const fs = require('node:fs');
      process.chdir(process.argv[1]);
      process.stdout.write('go');
      for (;;) for (let i = 0; i < 4; i++) try { fs.renameSync('d' + i, 't' + i); fs.renameSync('l' + i, 'd' + i); fs.renameSync('t' + i, 'l' + i); } catch {}
    `;
    for (let round = 0; round < 15; round++) {
      const lease = await manager.acquire(`raced-${round}`);
      for (let i = 0; i < 4; i++) {
        await mkdir(path.join(lease.dir, `d${i}`));
        for (let j = 0; j < 200; j++) await writeFile(path.join(lease.dir, `d${i}`, `g${j}`), 'x');
        await symlink(outside, path.join(lease.dir, `l${i}`));
      }
      const child = spawn(process.execPath, ['-e', racer, lease.dir], { stdio: ['ignore', 'pipe', 'ignore'], env: {} });
      children.push(child);
      await once(child.stdout!, 'data');
      const artifacts = (await listArtifacts(lease.dir, 100_000)).files;
      await lease.release();
      child.kill('SIGKILL');
      await once(child, 'exit');
      expect(artifacts.filter((name) => /\/f\d+$/.test(name))).toEqual([]);
      expect(await exists(lease.dir)).toBe(false);
      expect((await readdir(outside)).length).toBe(50);
    }
    // 15 rounds against a process spinning on a core: 34 s of a slow 2-core machine alone, past 60 s beside another test run.
  }, 180_000);

  it('removes symlinks without following them out of the workspace', async () => {
    const manager = new WorkspaceManager({ root: await freshRoot() });
    const outside = path.join(base, `outside-${counter}`);
    await mkdir(path.join(outside, 'dir'), { recursive: true });
    await writeFile(path.join(outside, 'file.txt'), 'keep me');
    await writeFile(path.join(outside, 'dir', 'inner.txt'), 'keep me too');
    await chmod(path.join(outside, 'dir'), 0o555);

    const lease = await manager.acquire('links');
    await symlink(path.join(outside, 'file.txt'), path.join(lease.dir, 'to-file'));
    await symlink(path.join(outside, 'dir'), path.join(lease.dir, 'to-dir'));
    await mkdir(path.join(lease.dir, 'sub'));
    await symlink(outside, path.join(lease.dir, 'sub', 'to-outside'));
    await symlink(path.join(outside, 'nowhere'), path.join(lease.dir, 'dangling'));
    await chmod(path.join(lease.dir, 'sub'), 0o500);
    await lease.release();

    expect(await exists(lease.dir)).toBe(false);
    expect(await readFile(path.join(outside, 'file.txt'), 'utf8')).toBe('keep me');
    expect(await readFile(path.join(outside, 'dir', 'inner.txt'), 'utf8')).toBe('keep me too');
    // Not even the permissions of the target were touched.
    expect(await mode(path.join(outside, 'dir'))).toBe(0o555);
    await chmod(path.join(outside, 'dir'), 0o755);
  });

  it('supports await using', async () => {
    const manager = new WorkspaceManager({ root: await freshRoot() });
    let dir = '';
    {
      await using lease = await manager.acquire('scoped');
      dir = lease.dir;
      await writeFile(path.join(dir, 'a.txt'), 'a');
      expect(await exists(dir)).toBe(true);
    }
    expect(await exists(dir)).toBe(false);
  });

  it.runIf(process.platform === 'linux')('says so, as a WorkspaceError and in rootProblem() (health), when the root is there and ours but nothing can be made in it (a read-only mount)', async () => {
    const root = await freshRoot();
    await mkdir(root, { recursive: true });
    const dist = new URL('../dist/index.js', import.meta.url).href;
    const script = `const { WorkspaceManager } = await import(${JSON.stringify(dist)});
const manager = new WorkspaceManager({ root: ${JSON.stringify(root)} });
const problem = await manager.rootProblem();
const acquired = await manager.acquire('x').then(() => 'ok', (error) => error.code);
console.log(JSON.stringify({ problem, acquired }));`;
    // bubblewrap (installed by the test command) binds the root read-only over itself, for that process alone.
    const run = spawnSync('bwrap', ['--dev-bind', '/', '/', '--ro-bind', root, root, process.execPath, '--input-type=module', '-e', script], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' }, timeout: 20_000 });
    expect(run.stderr).toBe('');
    // Before: no problem said (health() ok), while every execution failed with EROFS.
    expect(JSON.parse(run.stdout)).toEqual({ problem: `Cannot create workspace root ${root}: no folder can be made in it (EROFS)`, acquired: 'WORKSPACE_ERROR' });
  });

  it.runIf(process.platform === 'linux')('removes a workspace, files and folders in it, in a host under Node\'s permission model whose grants cover the root but not /proc', async () => {
    const root = await freshRoot();
    const repo = path.resolve(new URL('../../..', import.meta.url).pathname);
    const flag = process.allowedNodeEnvironmentFlags.has('--permission') ? '--permission' : '--experimental-permission';
    const dist = new URL('../dist/index.js', import.meta.url).href;
    const script = `import fs from 'node:fs';
const { WorkspaceManager } = await import(${JSON.stringify(dist)});
process.on('warning', (w) => console.log(JSON.stringify({ warning: w.name + ': ' + w.message })));
const lease = await new WorkspaceManager({ root: ${JSON.stringify(root)} }).acquire('x');
fs.mkdirSync(lease.dir + '/sub/deeper', { recursive: true });
fs.writeFileSync(lease.dir + '/sub/deeper/out.txt', 'x');
const released = await lease.release().then(() => 'ok', (error) => error.message);
console.log(JSON.stringify({ released, left: fs.readdirSync(${JSON.stringify(root)}) }));`;
    const run = spawnSync(process.execPath, [flag, `--allow-fs-read=${repo}`, `--allow-fs-read=${base}`, `--allow-fs-write=${base}`, '--no-warnings', '--input-type=module', '-e', script], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' }, timeout: 20_000 });
    expect(run.stderr).toBe('');
    // Before: "Cannot remove workspace …: Access to this API has been restricted", the folder left behind (KB_PLUGIN_WORKSPACE_LEFT) on every execution.
    expect(run.stdout.trim().split('\n').map((line) => JSON.parse(line) as unknown)).toEqual([{ released: 'ok', left: [] }]);
  });

  it('wraps a failure to create the root in WorkspaceError', async () => {
    const file = path.join(await freshRoot());
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, 'not a directory');
    const manager = new WorkspaceManager({ root: path.join(file, 'sub') });
    const error = await manager.acquire('x').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WorkspaceError);
    // Which folder on the way is a file, said plainly (before: mkdir's raw "ENOTDIR: not a directory, mkdir …").
    expect((error as WorkspaceError).message).toBe(`Cannot create workspace root ${manager.root}: ${file} is a file, not a folder (ENOTDIR)`);
  });

  it('says so, as a WorkspaceError, when the root is a file, a link, or in a file system that takes no new folders (/proc: Node\'s recursive mkdir retries that for ever)', async () => {
    const file = await freshRoot();
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, 'not a directory');
    for (const [root, says] of [
      [file, 'it is not a directory'],
      ['/proc/kb-no-such-folder/deeper', 'ENOENT'],
    ] as const) {
      const manager = new WorkspaceManager({ root });
      const error = await manager.acquire('x').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(WorkspaceError);
      expect((error as WorkspaceError).message).toBe(`Cannot create workspace root ${root}: ${says}${says === 'ENOENT' ? `: no such file or directory, mkdir '/proc/kb-no-such-folder'` : ''}`);
    }
  });
});

describe('a workspace root that is a symbolic link', () => {
  it('is followed when this process\'s user made it, to a directory of its own (a root on another disk), and health sees no problem', async () => {
    const base = await mkdtemp(path.join(os.tmpdir(), 'kb-root-link-'));
    try {
      await mkdir(path.join(base, 'disk'));
      await symlink(path.join(base, 'disk'), path.join(base, 'link'));
      const manager = new WorkspaceManager({ root: path.join(base, 'link') });
      expect(await manager.rootProblem()).toBeUndefined();
      const lease = await manager.acquire('via-link');
      expect(await realpath(lease.dir)).toBe(path.join(await realpath(path.join(base, 'disk')), path.basename(lease.dir)));
      await lease.release();
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  });

  it.runIf(process.getuid?.() === 0)('is refused when the link, or the directory it leads to, belongs to another user (one planted in a shared place)', async () => {
    const base = await mkdtemp(path.join(os.tmpdir(), 'kb-root-link-'));
    try {
      await mkdir(path.join(base, 'theirs'));
      await chown(path.join(base, 'theirs'), 65534, 65534);
      await symlink(path.join(base, 'theirs'), path.join(base, 'to-theirs'));
      const toTheirs = new WorkspaceManager({ root: path.join(base, 'to-theirs') });
      expect(await toTheirs.rootProblem()).toBe(`Cannot create workspace root ${toTheirs.root}: the directory it links to is owned by uid 65534, not by this process (uid 0)`);
      await symlink(path.join(base, 'theirs'), path.join(base, 'planted'));
      await lchown(path.join(base, 'planted'), 65534, 65534);
      const planted = new WorkspaceManager({ root: path.join(base, 'planted') });
      const error = await planted.acquire('x').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(WorkspaceError);
      expect((error as Error).message).toBe(`Cannot create workspace root ${planted.root}: it is a symbolic link that is owned by uid 65534, not by this process (uid 0)`);
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  });
});

describe('a workspace root that changes after it was found good', () => {
  it('replaced by a file: the next acquire fails saying so, as at the start, and health() says it; put back, it serves', async () => {
    const base = await mkdtemp(path.join(os.tmpdir(), 'kb-root-later-'));
    try {
      const manager = new WorkspaceManager({ root: path.join(base, 'ws') });
      await (await manager.acquire('first')).release();
      expect(await manager.rootProblem()).toBeUndefined();
      await rm(manager.root, { recursive: true });
      await writeFile(manager.root, 'not a folder');
      const error = await manager.acquire('second').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(WorkspaceError);
      expect((error as Error).message).toBe(`Cannot create workspace root ${manager.root}: it is not a directory`);
      expect(await manager.rootProblem()).toBe(`Cannot create workspace root ${manager.root}: it is not a directory`);
      await rm(manager.root);
      await (await manager.acquire('third')).release();
      expect(await manager.rootProblem()).toBeUndefined();
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  });

  it.runIf(process.getuid?.() === 0)("swapped for a link to another user's directory: refused, and nothing is made there", async () => {
    const base = await mkdtemp(path.join(os.tmpdir(), 'kb-root-swapped-'));
    try {
      const manager = new WorkspaceManager({ root: path.join(base, 'ws') });
      await (await manager.acquire('first')).release();
      await mkdir(path.join(base, 'theirs'));
      await chown(path.join(base, 'theirs'), 65534, 65534);
      await rm(manager.root, { recursive: true });
      await symlink(path.join(base, 'theirs'), manager.root);
      const error = await manager.acquire('second').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(WorkspaceError);
      expect((error as Error).message).toBe(`Cannot create workspace root ${manager.root}: the directory it links to is owned by uid 65534, not by this process (uid 0)`);
      expect(await readdir(path.join(base, 'theirs'))).toEqual([]);
      expect(await manager.rootProblem()).toMatch(/owned by uid 65534/);
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  });
});

describe('a workspace root given oddly', () => {
  it('a link that leads nowhere is said so, with where it points (not a bare ENOENT of the root, which is there)', async () => {
    const base = await mkdtemp(path.join(os.tmpdir(), 'kb-root-odd-'));
    try {
      await symlink(path.join(base, 'nowhere'), path.join(base, 'dangling'));
      const manager = new WorkspaceManager({ root: path.join(base, 'dangling') });
      expect(await manager.rootProblem()).toBe(`Cannot create workspace root ${manager.root}: it is a symbolic link to ${path.join(base, 'nowhere')}, which does not exist`);
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  });

  it.runIf(process.platform === 'linux')('a path so long that no workspace fits under it is named in rootProblem() (health), shown by its two ends', async () => {
    const base = await mkdtemp(path.join(os.tmpdir(), 'kb-root-odd-'));
    try {
      let root = base;
      while (Buffer.byteLength(root) < 4094 - 250) root = path.join(root, 'd'.repeat(250));
      root = path.join(root, 'e'.repeat(4094 - 1 - Buffer.byteLength(root)));
      const manager = new WorkspaceManager({ root });
      const problem = (await manager.rootProblem())!;
      expect(problem).toContain('its path is 4094 bytes long: a workspace under it (about 110 bytes more) would pass the 4095 bytes this system takes in a path');
      expect(problem).toContain(`Cannot create workspace root ${root.slice(0, 100)}…(4094 characters)…${root.slice(-100)}:`);
      const error = await manager.acquire('x').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(WorkspaceError);
      expect((error as WorkspaceError).details).toMatchObject({ root, code: 'ENAMETOOLONG' });
      // Not made: a tree no workspace fits under would only be left behind.
      await expect(stat(path.dirname(root))).rejects.toMatchObject({ code: 'ENOENT' });
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  });

  it('a file: URL string is the folder it names (as plugins take it), not a relative path "file:/…" under the working directory', async () => {
    const dir = await freshRoot();
    const manager = new WorkspaceManager({ root: pathToFileURL(dir).href });
    expect(manager.root).toBe(dir);
    const lease = await manager.acquire('from-url');
    expect(path.dirname(lease.dir)).toBe(dir);
    await lease.release();
    expect(() => new WorkspaceManager({ root: 'file://elsewhere/x' })).toThrow(WorkspaceError);
    expect(() => new WorkspaceManager({ root: 'file://elsewhere/x' })).toThrow(/Workspace root file:\/\/elsewhere\/x is not a usable file: URL/);
    // Not a URL: a relative folder of that name, as it always was (not "/rel-dir").
    expect(new WorkspaceManager({ root: 'file:rel-dir' }).root).toBe(path.resolve('file:rel-dir'));
    // The one-slash form is a URL too (what new URL() takes), not a folder "file:" under the working directory.
    expect(new WorkspaceManager({ root: `file:${dir}` }).root).toBe(dir);
  });
});

describe('listArtifacts', () => {
  it('leaves out names that are not valid UTF-8 (a lossy string would name no file), and lists the rest', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'kb-artifacts-'));
    try {
      const raw = Buffer.from(dir);
      for (const bytes of [[0x62, 0x61, 0x64, 0xff, 0xfe], [0x62, 0x61, 0x64, 0xff, 0xfd]]) {
        await writeFile(Buffer.concat([raw, Buffer.from('/'), Buffer.from(bytes)]), 'x');
      }
      await mkdir(path.join(dir, 'sub'));
      await writeFile(path.join(dir, 'sub', 'ünïcode.txt'), 'x');
      await writeFile(path.join(dir, 'line1\nline2'), 'x');
      // Said not whole (before, nothing told the host two files were left out).
      expect(await listArtifacts(dir)).toEqual({ files: ['line1\nline2', 'sub/ünïcode.txt'], truncated: true });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
  it('leaves symbolic links out (a link a plugin made may lead to any file of the host, which a host reading its artifacts would read for it)', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'kb-artifacts-'));
    try {
      await writeFile(path.join(dir, 'report.txt'), 'mine');
      await mkdir(path.join(dir, 'sub'));
      await symlink('/etc/hostname', path.join(dir, 'summary.txt'));
      await symlink('/etc', path.join(dir, 'sub', 'to-dir'));
      await symlink('../report.txt', path.join(dir, 'sub', 'inside'));
      await symlink(path.join(dir, 'nowhere'), path.join(dir, 'dangling'));
      expect(await listArtifacts(dir)).toEqual({ files: ['report.txt'], truncated: false });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
  it('says the list is cut only when a file is left out: as many files as the limit is the whole list', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'kb-artifacts-'));
    try {
      for (const name of ['a', 'b', 'c']) await writeFile(path.join(dir, name), 'x');
      expect(await listArtifacts(dir, 3)).toEqual({ files: ['a', 'b', 'c'], truncated: false });
      await mkdir(path.join(dir, 'sub'));
      await writeFile(path.join(dir, 'sub', 'd'), 'x');
      const cut = await listArtifacts(dir, 3);
      expect(cut.files).toHaveLength(3);
      expect(cut.truncated).toBe(true);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
  it('says the list is not whole when files lie deeper than the walk goes (64 folders), and goes on with the rest', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'kb-artifacts-'));
    try {
      const deep = path.join(dir, ...Array.from({ length: 70 }, () => 'd'));
      await mkdir(deep, { recursive: true });
      await writeFile(path.join(deep, 'report.json'), '{}');
      await writeFile(path.join(dir, 'top.txt'), 'x');
      await writeFile(path.join(dir, 'z.txt'), 'x');
      expect(await listArtifacts(dir)).toEqual({ files: ['top.txt', 'z.txt'], truncated: true });
      // A workspace its handler removed hides nothing: an empty list, whole.
      await rm(dir, { recursive: true, force: true });
      expect(await listArtifacts(dir)).toEqual({ files: [], truncated: false });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
  it.runIf(process.platform !== 'win32')('lists regular files, not links, FIFOs or sockets a plugin left', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'kb-artifacts-'));
    const server = net.createServer();
    try {
      await mkdir(path.join(dir, 'sub'));
      await writeFile(path.join(dir, 'sub', 'report.txt'), 'x');
      await symlink('/etc/hostname', path.join(dir, 'link'));
      execFileSync('mkfifo', [path.join(dir, 'pipe')]);
      await new Promise<void>((resolve) => server.listen(path.join(dir, 'sub', 'sock'), resolve));
      expect((await listArtifacts(dir)).files).toEqual(['sub/report.txt']);
    } finally {
      server.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('sweep()', () => {
  // 3,200 folders made and removed beside a sweeper: 16 s with the suite's other lanes running, past 30 s once.
  it('in the process that is making leases, never removes one whose mkdtemp has not resolved yet', async () => {
    const shared = await freshRoot();
    const making = new WorkspaceManager({ root: shared });
    const sweeping = new WorkspaceManager({ root: shared });
    let stop = false;
    let sweeps = 0;
    const sweeper = (async () => {
      while (!stop) {
        await sweeping.sweep();
        sweeps++;
      }
    })();
    const lost: string[] = [];
    await Promise.all(
      Array.from({ length: 8 }, async (_, client) => {
        for (let i = 0; i < 400; i++) {
          const lease = await making.acquire(`c${client}-${i}`);
          try {
            await writeFile(path.join(lease.dir, 'f'), 'x');
          } catch {
            lost.push(lease.dir);
          }
          await lease.release();
        }
      }),
    );
    stop = true;
    await sweeper;
    expect(sweeps).toBeGreaterThan(10);
    expect(lost).toEqual([]);
    expect(await readdir(shared)).toEqual([]);
  }, 120_000);

  it("a sweep in a worker thread leaves the main thread's live leases, and the main thread's sweep leaves a worker thread's (each thread knows only its own)", async () => {
    const root = await freshRoot();
    const manager = new WorkspaceManager({ root });
    const lease = await manager.acquire('main-live');
    const dist = new URL('../dist/index.js', import.meta.url).href;
    const script = `const { parentPort, workerData } = require('node:worker_threads');
import(workerData.dist).then(async ({ WorkspaceManager }) => {
  const manager = new WorkspaceManager({ root: workerData.root });
  const swept = await manager.sweep();
  const own = await manager.acquire('thread-live');
  parentPort.postMessage({ removed: swept.removed, own: own.dir });
  await new Promise((resolve) => parentPort.once('message', resolve));
  await own.release();
  parentPort.postMessage('released');
});`;
    const worker = new Worker(script, { eval: true, workerData: { dist, root } });
    try {
      const [{ removed, own }] = (await once(worker, 'message')) as [{ removed: string[]; own: string }];
      // Before: the thread's sweep removed the main thread's lease, mid-execution.
      expect(removed).toEqual([]);
      expect(await exists(lease.dir)).toBe(true);
      expect((await manager.sweep()).removed).toEqual([]);
      expect(await exists(own)).toBe(true);
      worker.postMessage('release');
      expect((await once(worker, 'message'))[0]).toBe('released');
    } finally {
      await worker.terminate();
      await lease.release();
    }
  });

  it('says why the root cannot be read (a file)', async () => {
    const file = path.join(await freshRoot(), 'a-file');
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, '');
    await expect(new WorkspaceManager({ root: file }).sweep()).rejects.toMatchObject({
      code: 'WORKSPACE_ERROR',
      message: `Cannot read workspace root ${file}: ENOTDIR: not a directory, scandir '${file}'`,
      details: { root: file, code: 'ENOTDIR' },
    });
  });

  it('returns nothing when the root does not exist', async () => {
    const manager = new WorkspaceManager({ root: await freshRoot() });
    await expect(manager.sweep()).resolves.toEqual({ removed: [], failed: [], foreign: [], kept: [] });
  });

  it('removes directories of dead processes and of no lease, and keeps live ones', async () => {
    const manager = new WorkspaceManager({ root: await freshRoot() });
    const mine = await manager.acquire('live-here');
    await writeFile(path.join(mine.dir, 'work.txt'), 'in use');

    const dead = await deadPid();
    const alive = livePid();
    const staleDir = path.join(root, `kbx-${dead}-x-abcdef12`);
    await mkdir(path.join(staleDir, 'nested'), { recursive: true });
    await writeFile(path.join(staleDir, 'nested', 'left.txt'), 'left behind');
    await chmod(path.join(staleDir, 'nested'), 0o500);
    const otherLive = path.join(root, `kbx-${alive}-y-abcdef12`);
    await mkdir(otherLive);
    const orphanOfMine = path.join(root, `kbx-${process.pid}-orphan-abcdef12`);
    await mkdir(orphanOfMine);
    const unrelated = path.join(root, 'not-a-workspace');
    await mkdir(unrelated);

    const result = await manager.sweep();
    expect(result.failed).toEqual([]);
    expect(result.removed.sort()).toEqual([orphanOfMine, staleDir].sort());
    expect(await exists(staleDir)).toBe(false);
    expect(await exists(orphanOfMine)).toBe(false);
    expect(await exists(otherLive)).toBe(true);
    expect(await exists(unrelated)).toBe(true);
    expect(await readFile(path.join(mine.dir, 'work.txt'), 'utf8')).toBe('in use');

    await mine.release();
    await rm(otherLive, { recursive: true });
    await rm(unrelated, { recursive: true });
  });

  it.runIf(process.platform === 'linux')("removes a dead host's directory whose pid a later process has taken, and keeps one of the process that holds it", async () => {
    const manager = new WorkspaceManager({ root: await freshRoot() });
    const mine = await manager.acquire('here');
    const tag = /^kbx-\d+\.([0-9a-f]{8})[.-]/.exec(path.basename(mine.dir))![1]!;
    await mine.release();
    const alive = livePid();
    const stat = await readFile(`/proc/${alive}/stat`, 'latin1');
    const start = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
    // Made by a process that had the pid before: it started earlier than the one holding it now.
    const leftByEarlier = path.join(root, `kbx-${alive}.${tag}.s${start - 1}-earlier-abcdef12`);
    const ofHolder = path.join(root, `kbx-${alive}.${tag}.s${start}-holder-abcdef12`);
    await mkdir(leftByEarlier);
    await mkdir(ofHolder);

    const result = await manager.sweep();
    expect(result).toEqual({ removed: [leftByEarlier], failed: [], foreign: [], kept: [] });
    expect(await exists(leftByEarlier)).toBe(false);
    expect(await exists(ofHolder)).toBe(true);
    await rm(ofHolder, { recursive: true });
  });

  it('keeps directories another machine or PID namespace made, whose pids mean nothing here', async () => {
    const manager = new WorkspaceManager({ root: await freshRoot() });
    const mine = await manager.acquire('mine');
    const tag = /^kbx-\d+\.([0-9a-f]{8})[.-]/.exec(path.basename(mine.dir))![1]!;
    const dead = await deadPid();
    const foreign = path.join(root, `kbx-${dead}.${tag === '00000000' ? '11111111' : '00000000'}-there-abcdef12`);
    const staleHere = path.join(root, `kbx-${dead}.${tag}-here-abcdef12`);
    const olderVersion = path.join(root, `kbx-${dead}-old-abcdef12`);
    for (const dir of [foreign, staleHere, olderVersion]) await mkdir(dir);
    const result = await manager.sweep();
    expect(result).toEqual({ removed: [olderVersion, staleHere].sort(), failed: [], foreign: [foreign], kept: [] });
    expect(await exists(foreign)).toBe(true);
    expect(await exists(mine.dir)).toBe(true);
    // Asked to, one not modified for longer than given goes too (a container long gone); a recent one stays.
    const old = new Date(Date.now() - 3 * 3600_000);
    await utimes(foreign, old, old);
    const recent = path.join(root, `kbx-${dead}.${tag === '00000000' ? '11111111' : '00000000'}-recent-abcdef12`);
    await mkdir(recent);
    expect(await manager.sweep({ foreignOlderThanMs: 2 * 3600_000 })).toEqual({ removed: [foreign], failed: [], foreign: [recent], kept: [] });
    expect(await exists(mine.dir)).toBe(true);
    await expect(manager.sweep({ foreignOlderThanMs: -1 })).rejects.toMatchObject({ code: 'WORKSPACE_ERROR', details: { field: 'foreignOlderThanMs' } });
    await mine.release();
    await rm(recent, { recursive: true });
  });

  // Two containers sharing a workspace volume: each host's pids are its own namespace's, and a pid
  // of one is dead (or someone else) in the other. A sweep on start in one must not remove the
  // other's live workspaces.
  it.runIf(process.platform === 'linux' && isRoot)('keeps the live lease of a host in another PID namespace (a container sharing the root)', async () => {
    const root = await freshRoot();
    const coreEntry = pathToFileURL(require.resolve('@kb-labs/plugin-execution-core')).href.replace(/\.cjs$/, '.js');
    // The host in the namespace gets a pid that no process has out here.
    let last = 30_000;
    while (pidInUse(last + 1)) last++;
    const host = `import { WorkspaceManager } from ${JSON.stringify(coreEntry)};
      const lease = await new WorkspaceManager({ root: ${JSON.stringify(root)} }).acquire('in-container');
      console.log(JSON.stringify({ pid: process.pid, dir: lease.dir }));
      setInterval(() => {}, 1000);`;
    const child = spawn(
      'unshare',
      ['--pid', '--fork', '--mount-proc', '--kill-child', 'sh', '-c', `echo ${last} > /proc/sys/kernel/ns_last_pid && "$0" --input-type=module -e "$1"`, process.execPath, host],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '' } },
    );
    const inside = (await firstLine(child)) as { pid: number; dir: string };
    expect(inside.pid).toBe(last + 1);
    expect(pidInUse(inside.pid)).toBe(false);
    const result = await new WorkspaceManager({ root }).sweep();
    expect(result).toEqual({ removed: [], failed: [], foreign: [inside.dir], kept: [] });
    expect(await exists(inside.dir)).toBe(true);
  });

  // Machines made from one image share a host name, and the first PID namespace's id is the same on
  // every machine: two such hosts sharing a root (a network file system) told apart by their machine id.
  it.runIf(process.platform === 'linux' && isRoot && existsSync('/etc/machine-id'))('keeps what a host on another machine of the same host name made (another /etc/machine-id), whose pids mean nothing here', async () => {
    const root = await freshRoot();
    const coreEntry = pathToFileURL(require.resolve('@kb-labs/plugin-execution-core')).href.replace(/\.cjs$/, '.js');
    const otherId = path.join(base, `machine-id-${counter++}`);
    await writeFile(otherId, `${'ab'.repeat(16)}\n`);
    // Its lease left as a host ended by SIGKILL would leave it; its pid is gone here (there it would run on).
    const host = `import { WorkspaceManager } from ${JSON.stringify(coreEntry)};
      const lease = await new WorkspaceManager({ root: ${JSON.stringify(root)} }).acquire('other-machine');
      console.log(JSON.stringify({ dir: lease.dir }));
      process.exit(0);`;
    const child = spawn('unshare', ['--mount', 'sh', '-c', 'mount --bind "$1" /etc/machine-id && exec "$0" --input-type=module -e "$2"', process.execPath, otherId, host], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { PATH: process.env.PATH ?? '' },
    });
    const exited = once(child, 'exit');
    const there = (await firstLine(child)) as { dir: string };
    await exited;
    const mine = await new WorkspaceManager({ root }).acquire('here');
    expect(path.basename(there.dir).split('-')[1]!.split('.')[1]).not.toBe(path.basename(mine.dir).split('-')[1]!.split('.')[1]);
    expect(await new WorkspaceManager({ root }).sweep()).toEqual({ removed: [], failed: [], foreign: [there.dir], kept: [] });
    expect(await exists(there.dir)).toBe(true);
    await mine.release();
  });

  // A host in a time namespace of its own (`unshare --time`), in the same PID namespace: /proc
  // shows each reader process start times shifted by the reader's own boot-time offset.
  const timeNamespaces = process.platform === 'linux' && isRoot && spawnSync('unshare', ['--time', '--boottime', '100000', 'true']).status === 0;
  it.runIf(timeNamespaces)('keeps the live lease of a host in another time namespace (its start times are shifted)', async () => {
    const root = await freshRoot();
    const coreEntry = pathToFileURL(require.resolve('@kb-labs/plugin-execution-core')).href.replace(/\.cjs$/, '.js');
    const host = `import { WorkspaceManager } from ${JSON.stringify(coreEntry)};
      const lease = await new WorkspaceManager({ root: ${JSON.stringify(root)} }).acquire('in-time-namespace');
      console.log(JSON.stringify({ dir: lease.dir }));
      setInterval(() => {}, 1000);`;
    const child = spawn('unshare', ['--time', '--boottime', '100000', process.execPath, '--input-type=module', '-e', host], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { PATH: process.env.PATH ?? '' },
    });
    const inside = (await firstLine(child)) as { dir: string };
    // Before: its name's start (11284104, say) was not the one read from here (1284104): taken for a process that took its pid, and removed mid-execution.
    expect(await new WorkspaceManager({ root }).sweep()).toEqual({ removed: [], failed: [], foreign: [], kept: [] });
    expect(await exists(inside.dir)).toBe(true);
  });

  it('never removes a kept workspace, in this process or once its process is gone; its mark goes when the host removed it', async () => {
    const manager = new WorkspaceManager({ root: await freshRoot() });
    const kept = await manager.acquire('kept-here');
    await writeFile(path.join(kept.dir, 'report.txt'), 'for the host');
    await kept.keep();
    expect(kept.released).toBe(true);
    await kept.release();
    expect(WorkspaceManager.liveLeases()).not.toContain(kept.dir);
    // One a host that is gone kept, as its directory and mark are left.
    const dead = await deadPid();
    const tag = /^kbx-\d+\.([0-9a-f]{8})[.-]/.exec(path.basename(kept.dir))![1]!;
    const keptByDead = path.join(root, `kbx-${dead}.${tag}-kept-there-abcdef12`);
    await mkdir(keptByDead);
    await writeFile(`${keptByDead}.kept`, '');
    const leftByDead = path.join(root, `kbx-${dead}.${tag}-left-abcdef12`);
    await mkdir(leftByDead);
    expect(await manager.sweep({ foreignOlderThanMs: 0 })).toEqual({ removed: [leftByDead], failed: [], foreign: [], kept: [kept.dir, keptByDead].sort() });
    expect(await readFile(path.join(kept.dir, 'report.txt'), 'utf8')).toBe('for the host');
    // The host is done with them: the next sweep takes the marks away, and nothing else.
    await rm(kept.dir, { recursive: true });
    await rm(keptByDead, { recursive: true });
    expect(await manager.sweep()).toEqual({ removed: [], failed: [], foreign: [], kept: [] });
    expect(await readdir(root)).toEqual([]);
  });

  it('a kept workspace whose mark cannot be written (a full disk, a read-only mount) is said: keep() rejects, leftBehind() names it, one process warning; this process still leaves it', async () => {
    const manager = new WorkspaceManager({ root: await freshRoot() });
    const warnings: Array<string | undefined> = [];
    const onWarning = (warning: Error & { code?: string }) => warnings.push(warning.code);
    process.on('warning', onWarning);
    try {
      for (const id of ['unmarked-1', 'unmarked-2']) {
        const lease = await manager.acquire(id);
        // Where the mark goes, a folder: writing it fails, as on a full disk.
        await mkdir(`${lease.dir}.kept`);
        await expect(lease.keep()).rejects.toThrow(WorkspaceError);
      }
      await new Promise((resolve) => setImmediate(resolve));
      expect(manager.leftBehind()).toMatch(/^2 kept workspace directories under .* could not be marked as kept \(the last: Cannot mark workspace .*unmarked-2.*\): a sweep\(\) once this process is gone would remove them/);
      expect(warnings.filter((code) => code === 'KB_PLUGIN_WORKSPACE_UNMARKED')).toHaveLength(1);
      expect((await manager.sweep()).removed).toEqual([]);
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('stops saying a kept directory could not be marked once the host has marked it or moved it away', async () => {
    const manager = new WorkspaceManager({ root: await freshRoot() });
    const [marked, moved] = [await manager.acquire('marked-later'), await manager.acquire('moved-later')];
    for (const lease of [marked, moved]) {
      // Where the mark goes, a folder: writing it fails, as on a full disk.
      await mkdir(`${lease.dir}.kept`);
      await expect(lease.keep()).rejects.toThrow(WorkspaceError);
    }
    expect(manager.leftBehind()).toMatch(/^2 kept workspace directories .* could not be marked as kept/);
    // What health() tells the host to do: write the mark itself...
    await rm(`${marked.dir}.kept`, { recursive: true });
    await writeFile(`${marked.dir}.kept`, '');
    expect(manager.leftBehind()).toMatch(/^1 kept workspace directory .* could not be marked as kept \(the last: Cannot mark workspace .*moved-later/);
    // ...or move the folder elsewhere. Before: both were still said, health() failing for good.
    await rename(moved.dir, `${moved.dir}-moved`);
    expect(manager.leftBehind()).toBeUndefined();
  });

  it('keep() never writes through a link put where its mark goes (a spare\'s handler may write the root): the file it leads to is untouched', async () => {
    const manager = new WorkspaceManager({ root: await freshRoot() });
    const lease = await manager.acquire('mark-through-link');
    const hostFile = path.join(base, `host-file-${counter}`);
    await writeFile(hostFile, 'the host\'s own data');
    await symlink(hostFile, `${lease.dir}.kept`);
    const keeping = await lease.keep().then(() => 'marked through the link', (error: unknown) => error);
    expect(await readFile(hostFile, 'utf8')).toBe('the host\'s own data');
    expect(keeping).toBeInstanceOf(WorkspaceError);
    // Kept all the same: a sweep leaves it, the link beside it (what sweep looks for) in place.
    expect((await manager.sweep()).kept).toEqual([lease.dir]);
    expect(await exists(lease.dir)).toBe(true);
  });

  it('leaves what only looks like a workspace by its first part (a root given in a folder of the user\'s own): only names a lease ends with are swept', async () => {
    const root = await freshRoot();
    await mkdir(root);
    const dead = await deadPid();
    const notes = path.join(root, `kbx-${dead}-notes`);
    await mkdir(notes);
    await writeFile(path.join(notes, 'todo.txt'), 'the user\'s own');
    await writeFile(path.join(root, `kbx-${dead}-plan.md`), 'the user\'s own');
    const stale = path.join(root, `kbx-${dead}-left-abcdef12`);
    await mkdir(stale);
    expect(await new WorkspaceManager({ root }).sweep()).toEqual({ removed: [stale], failed: [], foreign: [], kept: [] });
    expect(await readFile(path.join(notes, 'todo.txt'), 'utf8')).toBe('the user\'s own');
    expect(await readFile(path.join(root, `kbx-${dead}-plan.md`), 'utf8')).toBe('the user\'s own');
  });

  it('removes a stale entry that is a symlink without following it', async () => {
    const manager = new WorkspaceManager({ root: await freshRoot() });
    await mkdir(root, { recursive: true });
    const target = path.join(base, `sweep-target-${counter}`);
    await mkdir(target);
    await writeFile(path.join(target, 'precious.txt'), 'keep');
    const link = path.join(root, `kbx-${await deadPid()}-link-abcdef12`);
    await symlink(target, link);
    expect((await manager.sweep()).removed).toEqual([link]);
    expect(await exists(link)).toBe(false);
    expect(await readFile(path.join(target, 'precious.txt'), 'utf8')).toBe('keep');
  });

  it('keeps live leases of another manager on the same root, even from the other build of the package', async () => {
    const root = await freshRoot();
    const cjs = require('@kb-labs/plugin-execution-core') as { WorkspaceManager: typeof WorkspaceManager };
    expect(cjs.WorkspaceManager).not.toBe(WorkspaceManager);
    const fromCjs = await new cjs.WorkspaceManager({ root }).acquire('cjs-lease');
    const fromEsm = await new WorkspaceManager({ root }).acquire('esm-lease');
    const result = await new WorkspaceManager({ root }).sweep();
    expect(result.removed).toEqual([]);
    expect(await exists(fromCjs.dir)).toBe(true);
    expect(await exists(fromEsm.dir)).toBe(true);
    await fromCjs.release();
    await fromEsm.release();
    // Once released, a directory recreated under the same name is stale and swept.
    await mkdir(fromEsm.dir);
    expect((await new cjs.WorkspaceManager({ root }).sweep()).removed).toEqual([fromEsm.dir]);
  });

  it('keeps live leases of a manager whose root is the same folder by another path (a symbolic link to it)', async () => {
    const real = await freshRoot();
    await mkdir(real);
    const link = `${real}-link`;
    await symlink(real, link);
    const byLink = await new WorkspaceManager({ root: link }).acquire('by-link');
    const byReal = await new WorkspaceManager({ root: real }).acquire('by-real');
    expect((await new WorkspaceManager({ root: real }).sweep()).removed).toEqual([]);
    expect((await new WorkspaceManager({ root: link }).sweep()).removed).toEqual([]);
    expect(await exists(byLink.dir)).toBe(true);
    expect(await exists(byReal.dir)).toBe(true);
    await byLink.release();
    await byReal.release();
    // Released, a directory under either name is stale and swept, by either path.
    await mkdir(byLink.dir);
    expect((await new WorkspaceManager({ root: real }).sweep()).removed).toEqual([path.join(real, path.basename(byLink.dir))]);
  });
});

async function makeReadOnlyTree(dir: string): Promise<void> {
  await mkdir(path.join(dir, 'a', 'b', 'c'), { recursive: true });
  await writeFile(path.join(dir, 'a', 'b', 'c', 'deep.txt'), 'deep');
  await writeFile(path.join(dir, 'top.txt'), 'top');
  await chmod(path.join(dir, 'a', 'b', 'c', 'deep.txt'), 0o400);
  await chmod(path.join(dir, 'top.txt'), 0o400);
  await chmod(path.join(dir, 'a', 'b', 'c'), 0o500);
  await chmod(path.join(dir, 'a', 'b'), 0o500);
  await mkdir(path.join(dir, 'locked'));
  await writeFile(path.join(dir, 'locked', 'x'), 'x');
  await chmod(path.join(dir, 'locked'), 0o000);
  await chmod(path.join(dir, 'a'), 0o500);
}

function currentUmask(): number {
  const mask = process.umask(0);
  process.umask(mask);
  return mask;
}

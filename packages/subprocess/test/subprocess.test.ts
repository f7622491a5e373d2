import { spawnSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, readdir, realpath, rm, stat, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { BASIC, HOSTILE, expectError, expectOk, fixturePlugins } from '@kb-labs/plugin-execution-conformance';
import { ValidationError, type ExecutionEvent, type LogEntry } from '@kb-labs/plugin-execution-core';
import { SubprocessBackend, detectPermissionFlag, type SubprocessBackendOptions, type SubprocessRunnerStats } from '@kb-labs/plugin-execution-subprocess';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { deepestWritable } from './fixtures/plugins/probe/handlers/deep.mjs';
import { PROBE, childrenOf, eventually, hasProc, isAlive, probePlugin } from './helpers.js';

/** Generous "on time" bound for shared, slow machines. */
const SLACK_MS = 3000;

let root: string;
let outside: string;
const backends: SubprocessBackend[] = [];

async function runners(backend: SubprocessBackend): Promise<SubprocessRunnerStats> {
  return (await backend.stats()).runners as SubprocessRunnerStats;
}

function make(options: SubprocessBackendOptions = {}): SubprocessBackend {
  const backend = new SubprocessBackend({
    plugins: [probePlugin, fixturePlugins.basic, fixturePlugins.hostile, fixturePlugins.guarded],
    workspace: { root },
    ...options,
  });
  backends.push(backend);
  return backend;
}

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'kb-subprocess-test-'));
  outside = await mkdtemp(path.join(os.tmpdir(), 'kb-subprocess-outside-'));
  await writeFile(path.join(outside, 'secret.txt'), 'host secret');
});

afterEach(async () => {
  await Promise.all(backends.splice(0).map((b) => b.shutdown({ timeoutMs: 2000 })));
  expect(await readdir(root)).toEqual([]);
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
  await rm(outside, { recursive: true, force: true });
  await rm(path.join(probePlugin, 'out'), { recursive: true, force: true });
});

describe('protocol', () => {
  it.each([
    ['garbage', 'undecodable frame'],
    ['plausible-length', 'not a frame header'],
    ['bad-check', 'check byte'],
    ['bad-version', 'frame format version 9'],
    ['oversized', 'exceeds the limit'],
    ['unknown-type', 'unknown message type'],
    ['bad-rpc', 'rpc without an integer id'],
    ['second-ready', 'second ready'],
    ['close', 'closed its channel to the host (fd 3) and kept running'],
    ['close-then-return', 'closed its channel to the host (fd 3)'],
  ])('a child writing %s to the protocol pipe is killed: WORKER_CRASHED (protocol), and the host keeps serving', async (kind, problem) => {
    const backend = make();
    const result = await backend.execute({ pluginId: PROBE, handlerId: 'pipe-garbage', input: { kind } }, { timeoutMs: 20_000 });
    expectError(result, 'WORKER_CRASHED');
    expect(result.error.details).toMatchObject({ reason: 'protocol' });
    expect(String(result.error.details.protocolError)).toContain(problem);
    // Detected on arrival, not by the 20 s time limit.
    expect(result.meta.durationMs).toBeLessThan(SLACK_MS * 2);
    expect(isAlive(result.meta.pid!)).toBe(false);
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'after' }));
    expect(await runners(backend)).toMatchObject({ crashed: { protocol: 1 } });
  });

  it('a child that sends more platform calls than a runner may have in flight is killed and counted as a protocol crash (not as a stop the host made)', async () => {
    const backend = make({ platform: { kv: { get: () => new Promise(() => {}) } }, permissions: { platform: { kv: ['get'] } } });
    const result = await backend.execute({ pluginId: PROBE, handlerId: 'pipe-garbage-kv', input: { kind: 'too-many-calls' } }, { timeoutMs: 20_000 });
    expectError(result, 'WORKER_CRASHED');
    expect(result.error.details).toMatchObject({ reason: 'protocol', protocolError: 'more than 64 platform calls in flight' });
    expect(result.meta.durationMs).toBeLessThan(SLACK_MS * 2);
    expect(await runners(backend)).toMatchObject({ crashed: { protocol: 1 }, killed: 0 });
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'after' }));
  });

  it('carries 10 MB both ways at once through platform calls without deadlock', async () => {
    const big = 'x'.repeat(10 * 1024 * 1024);
    const backend = make({ permissions: { platform: { kv: true } }, platform: { kv: { echo: async (v: unknown) => v } } });
    const result = await backend.execute({ pluginId: PROBE, handlerId: 'big-rpc', input: { big } }, { timeoutMs: 25_000 });
    expectOk(result);
    expect(result.data).toEqual({ a: big.length, b: big.length, same: true, upper: 'XXX' });
  });

  it('a child that stops reading while large platform results pile up for it is killed (protocol), not buffered without end', async () => {
    const backend = make({
      maxFrameBytes: 4 * 1024 * 1024,
      permissions: { platform: { kv: true } },
      platform: { kv: { blob: async (n: number) => 'y'.repeat(n) } },
    });
    const result = await backend.execute({ pluginId: PROBE, handlerId: 'hoard', input: { calls: 4, bytes: 3 * 1024 * 1024 } }, { timeoutMs: 20_000 });
    expectError(result, 'WORKER_CRASHED');
    expect(result.error.details).toMatchObject({ reason: 'protocol' });
    expect(String(result.error.details.protocolError)).toContain('stopped reading');
    expect(result.meta.durationMs).toBeLessThan(15_000);
  });

  it('a result or platform answer nested deeper than the other side can rebuild fails the execution with VALIDATION_ERROR (unreadable-message), as on a thread, not as a protocol breach', async () => {
    const backend = make({ permissions: { platform: { kv: true } }, platform: { kv: { deep: async () => deepestWritable() } } });
    for (const [as, where] of [
      ['result', 'A message the handler sent (its result, an event, a log line or a call) could not be read by the host'],
      // Before: the result right behind it was taken, and the event lost with the execution a success.
      ['event', 'A message the handler sent (its result, an event, a log line or a call) could not be read by the host'],
      ['call-result', "A message the host sent (the input, a platform call's answer, a channel message or a cancel) could not be read in the handler's process"],
    ] as const) {
      const result = await backend.execute({ pluginId: PROBE, handlerId: 'deep', input: { as } }, { timeoutMs: 20_000 });
      expectError(result, 'VALIDATION_ERROR');
      expect(result.error.details, as).toMatchObject({ reason: 'unreadable-message' });
      expect(result.error.message, as).toContain(where);
      expect(result.error.message, as).toContain('it is nested deeper than can be rebuilt there');
    }
    expect(await runners(backend)).toMatchObject({ crashed: {} });
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'after' }));
  });

  it('refuses an input larger than maxFrameBytes with VALIDATION_ERROR, without starting a process', async () => {
    const backend = make({ maxFrameBytes: 64 * 1024 });
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'y'.repeat(100 * 1024) });
    expectError(result, 'VALIDATION_ERROR');
    expect(result.error.message).toContain('exceeds the frame limit');
    expect(result.error.details).toMatchObject({ path: 'input', reason: 'too-large', limit: 64 * 1024 });
    expect(await runners(backend)).toMatchObject({ spawned: 0 });
  });

  it('names a context that made the run frame larger than maxFrameBytes (path context), not the input', async () => {
    const backend = make({ maxFrameBytes: 64 * 1024 });
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'small', context: { notes: 'y'.repeat(100 * 1024) } });
    expectError(result, 'VALIDATION_ERROR');
    expect(result.error.message).toMatch(/^The context is \d+ bytes encoded: it exceeds the frame limit of 65536 bytes \(maxFrameBytes\)$/);
    expect(result.error.details).toMatchObject({ path: 'context', reason: 'too-large', limit: 64 * 1024 });
    expect(result.error.details.bytes).toBeGreaterThan(100 * 1024);
    expect(await runners(backend)).toMatchObject({ spawned: 0 });
  });

  it('a result larger than maxFrameBytes is VALIDATION_ERROR saying so (reason too-large, the limit), not that it cannot be serialised', async () => {
    const backend = make({ maxFrameBytes: 64 * 1024 });
    const result = await backend.execute({ pluginId: PROBE, handlerId: 'returns-big', input: { bytes: 100 * 1024 } });
    expectError(result, 'VALIDATION_ERROR');
    // Before: reason 'not-serializable', as for a function in the result.
    expect(result.error.details).toMatchObject({ what: 'handler result', reason: 'too-large', limit: 64 * 1024 });
    expect(result.error.message).toContain('exceeds the frame limit');
  });
});

describe('a result or error past maxFrameBytes', () => {
  it("a handler's error too large to send whole is still its HANDLER_ERROR, its message cut to fit (as the other backends give it), not VALIDATION_ERROR", async () => {
    const result = await make({ maxFrameBytes: 64 * 1024 }).execute({ pluginId: PROBE, handlerId: 'throws-big', input: { chars: 60_000 } });
    expectError(result, 'HANDLER_ERROR');
    expect(result.error.message).toMatch(/^x{2000}… \(cut to fit: message of \d+ bytes exceeds the frame limit of 65536 bytes\)$/);
    expect((result.error.cause as Error).name).toBe('BigError');
  });

  it('at the smallest maxFrameBytes (1024) a result too large is VALIDATION_ERROR too-large and an error too large is HANDLER_ERROR, not a child crashed by its own stand-in', async () => {
    const backend = make({ maxFrameBytes: 1024 });
    const big = await backend.execute({ pluginId: PROBE, handlerId: 'returns-big', input: { bytes: 4096 } });
    expectError(big, 'VALIDATION_ERROR');
    expect(big.error.details).toMatchObject({ what: 'handler result', reason: 'too-large', limit: 1024 });
    const thrown = await backend.execute({ pluginId: PROBE, handlerId: 'throws-big', input: { chars: 4096 } });
    expectError(thrown, 'HANDLER_ERROR');
    expect(thrown.error.message).toMatch(/^x{120}… \(/);
  });
});

describe('handshake', () => {
  it('a child that exits before ready → WORKER_CRASHED (handshake) with its exit code and stderr tail', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'kb-fake-node-'));
    try {
      // Answers the backend's question of which Node it is (node -e …) as this Node, then fails to start a child.
      const fake = path.join(dir, 'fake-node');
      await writeFile(fake, `#!/bin/sh\nif [ "$1" = "-e" ]; then exec ${JSON.stringify(process.execPath)} "$@"; fi\necho "fake node cannot start" >&2\nexit 3\n`);
      await chmod(fake, 0o755);
      const backend = make({ execPath: fake });
      const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo' });
      expectError(result, 'WORKER_CRASHED');
      expect(result.error.details).toMatchObject({ reason: 'start-failed', exitCode: 3 });
      expect(result.error.details.stderrTail).toContain('fake node cannot start');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('children that fail to start are named by health() (how the last failed, its stderr) until one starts', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'kb-fake-node-'));
    try {
      // This Node, but unable to start a child while `broken` is there.
      const fake = path.join(dir, 'fake-node');
      const broken = path.join(dir, 'broken');
      await writeFile(broken, '');
      await writeFile(fake, `#!/bin/sh\nif [ "$1" != "-e" ] && [ -e ${JSON.stringify(broken)} ]; then echo "fake node cannot start" >&2; exit 3; fi\nexec ${JSON.stringify(process.execPath)} "$@"\n`);
      await chmod(fake, 0o755);
      const backend = make({ execPath: fake, sandbox: 'off' });
      expect((await backend.health()).problems).toEqual([]);
      for (let i = 0; i < 2; i++) expectError(await backend.execute({ pluginId: BASIC, handlerId: 'echo' }), 'WORKER_CRASHED');
      const health = await backend.health();
      expect(health.ok).toBe(false);
      expect(health.problems).toEqual([
        'child processes fail to start (the last 2 did): The child process running handler "echo" of plugin "@conformance/basic" did not start: it exited with code 3 before its ready message (its stderr ends: fake node cannot start)',
      ]);
      await rm(broken);
      expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'x' }));
      expect((await backend.health()).problems).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('a spare that boots ends the start-failure streak health() names, as the child of an execution does', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'kb-fake-node-'));
    try {
      // This Node, but unable to start a child in a workspace (an execution's cold child); a spare starts in its plugin's folder.
      const fake = path.join(dir, 'fake-node');
      const workspaces = `${await realpath(root)}/`;
      await writeFile(fake, `#!/bin/sh\ncase "$(pwd -P)/" in ${JSON.stringify(workspaces)}*) echo "fake node cannot start" >&2; exit 3;; esac\nexec ${JSON.stringify(process.execPath)} "$@"\n`);
      await chmod(fake, 0o755);
      const backend = make({ execPath: fake, sandbox: 'off', prespawn: 1 });
      expectError(await backend.execute({ pluginId: BASIC, handlerId: 'echo' }), 'WORKER_CRASHED');
      // The spare refilled behind it boots, and stays: prespawn is not switched off.
      expect(await eventually(async () => (await runners(backend)).spares.ready === 1, 10_000)).toBe(true);
      // Before: 'child processes fail to start (the last one did): …' until an execution's child started.
      expect((await backend.health()).problems).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('an execPath that is no Node is refused when the backend is made, naming it and with what it said', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'kb-fake-node-'));
    try {
      const fake = path.join(dir, 'not-node');
      await writeFile(fake, '#!/bin/sh\necho "no node here" >&2\nexit 3\n');
      await chmod(fake, 0o755);
      expect(() => make({ execPath: fake })).toThrow(`execPath ${fake} did not say which Node it is and which flags it takes (no node here): execPath must be a Node binary`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("the children's Node flags are chosen from the Node at execPath, not from the host's", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'kb-other-node-'));
    try {
      // This Node, saying it is an older one that knows neither --disable-warning nor --no-experimental-sqlite
      // (a Node 22 child of a Node 20 host was given the host's choice: node:sqlite stayed on, writing outside its grants).
      const older = path.join(dir, 'older-node');
      const ask = 'process.stdout.write(JSON.stringify({ version: "v20.0.0", flags: [...process.allowedNodeEnvironmentFlags].filter((f) => !["--disable-warning", "--no-experimental-sqlite"].includes(f)) }))';
      await writeFile(older, `#!/bin/sh\nif [ "$1" = "-e" ]; then exec ${JSON.stringify(process.execPath)} -e '${ask}'; fi\nexec ${JSON.stringify(process.execPath)} "$@"\n`);
      await chmod(older, 0o755);
      const execArgv = async (backend: SubprocessBackend): Promise<string[]> => {
        const result = await backend.execute({ pluginId: PROBE, handlerId: 'whoami' });
        expectOk(result);
        return (result.data as { execArgv: string[] }).execArgv;
      };
      const own = await execArgv(make({ sandbox: 'off' }));
      const other = await execArgv(make({ sandbox: 'off', execPath: older }));
      const model = detectPermissionFlag()!;
      expect(own).toContain(model);
      expect(other).toContain(model);
      if (process.allowedNodeEnvironmentFlags.has('--disable-warning')) expect(own).toContain('--disable-warning=ExperimentalWarning');
      expect(other.filter((flag) => flag.startsWith('--disable-warning') || flag === '--no-experimental-sqlite')).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('takes the output limits in the same ranges as the worker-pool backend', () => {
    expect(() => make({ maxOutputPerStream: 1_000_000_001 })).toThrow(/maxOutputPerStream: must be an integer from 0 to 1000000000, got 1000000001/);
    expect(() => make({ maxLogLineLength: 79 })).toThrow(/maxLogLineLength: must be an integer from 80 to 100000000, got 79/);
  });

  it("a relative execPath is taken from the host's working directory, as its check when the backend is made, not from each child's workspace", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'kb-relative-node-'));
    const cwd = process.cwd();
    try {
      await symlink(process.execPath, path.join(dir, 'node'));
      process.chdir(dir);
      const backend = make({ sandbox: 'off', execPath: './node' });
      process.chdir(cwd);
      const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'ran' });
      expectOk(result);
      expect(result.data).toBe('ran');
      expect((await backend.health()).problems).toEqual([]);
    } finally {
      process.chdir(cwd);
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('an execPath that is not an executable file is refused when the backend is made', () => {
    expect(() => make({ execPath: path.join(os.tmpdir(), 'kb-no-such-node', 'node') })).toThrow(/execPath: must be the path of an executable file/);
    expect(() => make({ execPath: os.tmpdir() })).toThrow(/execPath: must be the path of an executable file/);
  });

  it('a child that stays silent past handshakeTimeoutMs is killed → WORKER_CRASHED (handshake)', async () => {
    const backend = make({ handshakeTimeoutMs: 1 });
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo' });
    expectError(result, 'WORKER_CRASHED');
    expect(result.error.details).toMatchObject({ reason: 'start-failed' });
    expect(result.error.message).toContain('no ready message within 1 ms');
  });
});

describe('crashes and hostile handlers: each has a stated outcome', () => {
  it('process.exit(0) → WORKER_CRASHED (exit) with exit code 0, naming the child as meta does', async () => {
    const result = await make().execute({ pluginId: HOSTILE, handlerId: 'exit', input: { code: 0 } });
    expectError(result, 'WORKER_CRASHED');
    expect(result.error.details).toMatchObject({ reason: 'exit', exitCode: 0, signal: null });
    // The message says how it ended, for a host that logs only the message.
    expect(result.error.message).toMatch(/^The child process running handler "exit" of plugin "[^"]+" exited with code 0 before returning a result/);
    expect(result.meta.runnerId).toMatch(/^pid:\d+$/);
    expect(result.error.details.runnerId).toBe(result.meta.runnerId);
  });

  it('a throw in a timer → WORKER_CRASHED (uncaught-exception, code 1): the error as cause, the stack in stderrTail', async () => {
    const backend = make();
    const result = await backend.execute({ pluginId: HOSTILE, handlerId: 'throw-in-timer' });
    expectError(result, 'WORKER_CRASHED');
    expect(result.error.details).toMatchObject({ reason: 'uncaught-exception', exitCode: 1 });
    expect(result.error.message).toMatch(/died of an uncaught exception: .*thrown from a timer/);
    expect((result.error.cause as Error).message).toContain('thrown from a timer');
    expect(result.error.details.stderrTail).toContain('thrown from a timer');
    expect(await runners(backend)).toMatchObject({ crashed: { 'uncaught-exception': 1, exit: 0 } });
  });

  it('an unhandled rejection → WORKER_CRASHED (unhandled-rejection), as on worker-pool', async () => {
    const result = await make().execute({ pluginId: HOSTILE, handlerId: 'unhandled-rejection' });
    expectError(result, 'WORKER_CRASHED');
    expect(result.error.details).toMatchObject({ reason: 'unhandled-rejection', exitCode: 1 });
    expect(result.error.message).toContain('died of an unhandled promise rejection');
    expect(result.error.cause).toBeInstanceOf(Error);
  });

  it("the end of its stderr in the message shows the plugin's control characters as escapes (details.stderrTail keeps them)", async () => {
    const text = 'plain line\n\u001b[31mred\u001b[0m \u202eevil\r\nlast\tline';
    const result = await make().execute({ pluginId: PROBE, handlerId: 'stderr-exit', input: { text } });
    expectError(result, 'WORKER_CRASHED');
    expect(result.error.details).toMatchObject({ reason: 'exit', exitCode: 3 });
    expect(result.error.message.split('\n--- end of its stderr ---\n')[1]).toBe('plain line\n\\x1b[31mred\\x1b[0m \\u202eevil\\r\nlast\tline');
    expect(result.error.details.stderrTail).toContain('\u001b[31mred');
  });

  it('a child that floods its stderr before it dies is reported with the end of it, not the start', async () => {
    const text = `${'x'.repeat(20_000)}\nthe last words`;
    const result = await make().execute({ pluginId: PROBE, handlerId: 'stderr-exit', input: { text } });
    expectError(result, 'WORKER_CRASHED');
    expect(result.error.details.stderrTail).toContain('the last words');
    expect(result.error.message).toContain('the last words');
  });

  it('SIGKILL of itself → WORKER_CRASHED (signal)', async () => {
    const result = await make().execute({ pluginId: HOSTILE, handlerId: 'kill-self' });
    expectError(result, 'WORKER_CRASHED');
    expect(result.error.details).toMatchObject({ reason: 'signal', signal: 'SIGKILL' });
    expect(result.error.message).toMatch(/^The child process running handler "kill-self" of plugin "[^"]+" was killed by SIGKILL before returning a result/);
  });

  it('running out of its memoryMb heap → WORKER_CRASHED (oom)', async () => {
    const result = await make().execute({ pluginId: HOSTILE, handlerId: 'oom' }, { timeoutMs: 25_000 });
    expectError(result, 'WORKER_CRASHED');
    expect(result.error.details).toMatchObject({ reason: 'oom', heapLimitMb: 64 });
    // The end of its stderr (V8's report, longer than what the message keeps) from the start of a line.
    const said = result.error.message.split('\n--- end of its stderr ---\n')[1]!;
    expect(String(result.error.details.stderrTail).trim().split('\n')).toEqual(expect.arrayContaining(said.split('\n')));
  });

  it('never resolving → TIMEOUT on time, and the process is gone', async () => {
    const backend = make();
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'never-resolves' }, { timeoutMs: 200 });
    expectError(result, 'TIMEOUT');
    expect(result.meta.durationMs).toBeLessThan(200 + SLACK_MS);
    expect(await eventually(() => !isAlive(result.meta.pid!))).toBe(true);
    expect(await runners(backend)).toMatchObject({ killed: 1, live: 0 });
  });

  it('an abort does not lengthen the time limit: cancelGraceMs ends at the execution\'s own limit', async () => {
    // A minute of grace (the most it takes), a limit of 1.5 s: the child is signalled at the limit.
    const backend = make({ cancelGraceMs: 60_000 });
    const controller = new AbortController();
    const pending = backend.execute({ pluginId: HOSTILE, handlerId: 'busy-loop' }, { signal: controller.signal, timeoutMs: 1500 });
    expect(await eventually(async () => (await runners(backend)).live === 1)).toBe(true);
    // Well into its loop (a child starts in tens of ms), so that the abort gets the grace.
    await new Promise((resolve) => setTimeout(resolve, 500));
    controller.abort();
    const result = await pending;
    expectError(result, 'ABORTED');
    expect(await eventually(() => !isAlive(result.meta.pid!))).toBe(true);
  });

  it('a busy loop → TIMEOUT on time (SIGTERM to the group, no cancel grace), and the process is gone', async () => {
    const backend = make({ cancelGraceMs: 10_000 });
    const result = await backend.execute({ pluginId: HOSTILE, handlerId: 'busy-loop' }, { timeoutMs: 200 });
    expectError(result, 'TIMEOUT');
    expect(result.meta.durationMs).toBeLessThan(200 + SLACK_MS);
    expect(await eventually(() => !isAlive(result.meta.pid!))).toBe(true);
  });

  it('spamming 10 MB of stdout → ok; delivery to onLog is capped, the rest drained, stderr still delivered', async () => {
    const logs: LogEntry[] = [];
    const backend = make({ maxOutputPerStream: 100_000 });
    const result = await backend.execute({ pluginId: HOSTILE, handlerId: 'stdout-spam' }, { onLog: (l) => logs.push(l), timeoutMs: 25_000 });
    expectOk(result);
    expect(result.data).toEqual({ lines: 10 * 1024 });
    const stdout = logs.filter((l) => l.stream === 'stdout');
    expect(stdout.length).toBeGreaterThan(50);
    expect(stdout.length).toBeLessThan(200);
    expect(stdout.at(-1)!.message).toMatch(/output truncated/);
    expect(logs.filter((l) => l.stream === 'stderr').map((l) => l.message)).toContain('done spamming');
  });

  it('a child that writes garbage, crashes or spins never takes the host down', async () => {
    const backend = make();
    const outcomes = await Promise.all([
      backend.execute({ pluginId: PROBE, handlerId: 'pipe-garbage', input: { kind: 'garbage' } }),
      backend.execute({ pluginId: HOSTILE, handlerId: 'exit', input: { code: 9 } }),
      backend.execute({ pluginId: HOSTILE, handlerId: 'busy-loop' }, { timeoutMs: 300 }),
      backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'fine' }),
    ]);
    expect(outcomes.map((r) => (r.ok ? 'ok' : r.error.code))).toEqual(['WORKER_CRASHED', 'WORKER_CRASHED', 'TIMEOUT', 'ok']);
    expect((await backend.health()).ok).toBe(true);
  });
});

// Without the sandbox: a grandchild's pid is the host's, and the process group is what is killed.
// Under the sandbox the pid namespace is (sandbox-grandchild.test.ts).
describe('process group (sandbox off)', () => {
  it.runIf(process.platform !== 'win32')('timeout kills the whole group: no grandchild survives', async () => {
    const backend = make({ sandbox: 'off', permissions: { childProcess: true } });
    const events: ExecutionEvent[] = [];
    const result = await backend.execute({ pluginId: PROBE, handlerId: 'grandchild' }, { timeoutMs: 1500, onEvent: (e) => events.push(e) });
    expectError(result, 'TIMEOUT');
    const pid = (events[0]?.event as { pid: number }).pid;
    expect(pid).toBeGreaterThan(0);
    expect(await eventually(() => !isAlive(pid))).toBe(true);
  });

  it.runIf(process.platform !== 'win32')('abort kills the whole group after the cancel grace: no grandchild survives', async () => {
    const backend = make({ sandbox: 'off', permissions: { childProcess: true }, cancelGraceMs: 50, killGraceMs: 200 });
    const controller = new AbortController();
    const events: ExecutionEvent[] = [];
    const onEvent = (e: ExecutionEvent) => {
      events.push(e);
      controller.abort();
    };
    const result = await backend.execute({ pluginId: PROBE, handlerId: 'grandchild' }, { signal: controller.signal, onEvent, timeoutMs: 20_000 });
    expectError(result, 'ABORTED');
    const pid = (events[0]?.event as { pid: number }).pid;
    expect(pid).toBeGreaterThan(0);
    expect(await eventually(() => !isAlive(pid))).toBe(true);
  });

  it.runIf(process.platform !== 'win32')("a handler granted childProcess gets no SecurityWarning of Node's in its stderr at each start (the host granted it knowingly)", async () => {
    const backend = make({ sandbox: 'off', permissions: { childProcess: true } });
    const logs: string[] = [];
    const result = await backend.execute({ pluginId: PROBE, handlerId: 'runs', input: { file: process.execPath, args: ['-e', 'process.stdout.write("ran")'] } }, { onLog: (entry) => logs.push(entry.message) });
    expectOk(result);
    expect(result.data).toMatchObject({ code: 0, stdout: 'ran' });
    expect(logs.filter((line) => /Warning/.test(line))).toEqual([]);
  });

  it.runIf(process.platform !== 'win32')('a grandchild left behind by a successful execution is killed with its group', async () => {
    const backend = make({ sandbox: 'off', permissions: { childProcess: true } });
    const result = await backend.execute({ pluginId: PROBE, handlerId: 'grandchild', input: { wait: false } });
    expectOk(result);
    const { pid } = result.data as { pid: number };
    expect(await eventually(() => !isAlive(pid))).toBe(true);
  });

  it('a handler that ignores SIGTERM is ended by SIGKILL killGraceMs later, not left running', async () => {
    const backend = make({ cancelGraceMs: 50, killGraceMs: 200 });
    const controller = new AbortController();
    // Aborted once the handler says its SIGTERM listener is in place (its event), not after a guessed delay.
    const result = await backend.execute({ pluginId: PROBE, handlerId: 'ignores-sigterm' }, { signal: controller.signal, timeoutMs: 20_000, onEvent: () => controller.abort() });
    expectError(result, 'ABORTED');
    const pid = result.meta.pid!;
    expect(pid).toBeGreaterThan(0);
    // Checked before the afterEach shutdown, which would SIGKILL whatever is left anyway.
    expect(await eventually(() => !isAlive(pid))).toBe(true);
    expect(await runners(backend)).toMatchObject({ killed: 1 });
  });

  it('abort: ctx.signal fires in the child first, then SIGTERM ends a handler that ignores it', async () => {
    const backend = make({ cancelGraceMs: 100 });
    const controller = new AbortController();
    // Aborted once the handler says it listens (its `listening` event), not after a guessed delay:
    // on a loaded machine the child may still be starting, and a signal aborted before the
    // handler subscribes never fires its listener.
    const result = await backend.execute({ pluginId: PROBE, handlerId: 'respects-signal' }, { signal: controller.signal, timeoutMs: 20_000, onEvent: () => controller.abort() });
    expectError(result, 'ABORTED');
    expect(result.meta.artifacts).toEqual(['signal-ABORTED.txt']);
    expect(await eventually(() => !isAlive(result.meta.pid!))).toBe(true);
  });
});

describe('permissions (Node permission model)', () => {
  it('detects the permission flag this Node speaks', () => {
    const major = Number(process.versions.node.split('.')[0]);
    expect(detectPermissionFlag()).toBe(process.allowedNodeEnvironmentFlags.has('--permission') ? '--permission' : '--experimental-permission');
    expect(major >= 20).toBe(true);
  });

  it('a write outside the workspace → PERMISSION_DENIED naming the file; nothing is written', async () => {
    const target = path.join(outside, 'escaped.txt');
    const result = await make().execute({ pluginId: HOSTILE, handlerId: 'write-outside', input: { path: target } });
    expectError(result, 'PERMISSION_DENIED');
    expect(result.error.details).toMatchObject({ resource: `fs.write:${target}`, phase: 'runtime' });
    await expect(stat(target)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it.each([
    ['*', 'wildcard-in-path'],
    [',', 'comma-in-path'],
  ])('a workspace root whose path holds "%s", which Node\'s permission flags cannot express: VALIDATION_ERROR from the constructor; made a link to such a path later, the execution fails with VALIDATION_ERROR; nothing is written beside it', async (char, reason) => {
    const base = await mkdtemp(path.join(os.tmpdir(), 'kb-subprocess-odd-root-'));
    try {
      // Node reads `/base/star*/root` as every path starting `/base/star`: a grant of /base/starOUT.txt.
      const target = path.join(base, 'starOUT.txt');
      const odd = path.join(base, `star${char}`, 'root');
      expect(() => make({ sandbox: 'off', workspace: { root: odd } })).toThrow(expect.objectContaining({ code: 'VALIDATION_ERROR', details: expect.objectContaining({ path: 'workspace.root', reason }) }));
      // The constructor's check is not the only one: a root that is a link re-pointed since is refused at each start.
      const link = path.join(base, 'link');
      await mkdir(path.join(base, 'plain'));
      await symlink(path.join(base, 'plain'), link);
      const backend = make({ sandbox: 'off', workspace: { root: link } });
      await mkdir(odd, { recursive: true });
      await rm(link);
      await symlink(odd, link);
      const result = await backend.execute({ pluginId: HOSTILE, handlerId: 'write-outside', input: { path: target } });
      expectError(result, 'VALIDATION_ERROR');
      expect(result.error.details).toMatchObject({ reason });
      await backend.shutdown();
      await expect(stat(target)).rejects.toMatchObject({ code: 'ENOENT' });
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  });

  it('node:sqlite, which the model does not check, is off in the child (Node 22 and 24; Node 20 has none): no database file is made outside the grants', async () => {
    const target = path.join(outside, 'made-by-plugin.db');
    const result = await make({ sandbox: 'off' }).execute({ pluginId: PROBE, handlerId: 'sqlite', input: { path: target } });
    expectError(result, 'HANDLER_ERROR');
    expect(result.error.message).toMatch(/node:sqlite/);
    await expect(stat(target)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it("process.report, whose files the model does not check on Node 20 (22 and later refuse them), writes nothing outside the grants → PERMISSION_DENIED", async () => {
    const target = path.join(outside, 'report-target.txt');
    await writeFile(target, 'the host file');
    const result = await make({ sandbox: 'off' }).execute({ pluginId: PROBE, handlerId: 'report', input: { path: target } });
    expectError(result, 'PERMISSION_DENIED');
    expect(await readFile(target, 'utf8')).toBe('the host file');
  });

  it("V8 flags set at run time, which open files the model does not check (--redirect-code-traces-to), write nothing outside the grants → PERMISSION_DENIED", async () => {
    const target = path.join(outside, 'code-trace-target.txt');
    await writeFile(target, 'the host file');
    const result = await make({ sandbox: 'off' }).execute({ pluginId: PROBE, handlerId: 'v8-flags', input: { path: target } });
    expectError(result, 'PERMISSION_DENIED');
    expect(result.error.details).toMatchObject({ resource: 'fs.write:v8.setFlagsFromString' });
    expect(await readFile(target, 'utf8')).toBe('the host file');
  });

  it('a read outside the plugin folder and workspace → PERMISSION_DENIED naming the file', async () => {
    const target = path.join(outside, 'secret.txt');
    const result = await make().execute({ pluginId: PROBE, handlerId: 'read-file', input: { path: target } });
    expectError(result, 'PERMISSION_DENIED');
    expect(result.error.details).toMatchObject({ resource: `fs.read:${target}` });
    expect(JSON.stringify(result)).not.toContain('host secret');
  });

  it('reads inside its own plugin folder are allowed; declared fs.write folders are writable (one not made yet too: its own wildcard grant is no `*` path), others are not', async () => {
    await rm(path.join(probePlugin, 'out'), { recursive: true, force: true });
    const backend = make({ permissions: { fs: { read: ['data'], write: ['out'] } } });
    const read = await backend.execute({ pluginId: PROBE, handlerId: 'read-data', input: { path: 'data/answer.json' } });
    expectOk(read);
    expect(JSON.parse((read.data as { text: string }).text)).toEqual({ answer: 42 });
    expectOk(await backend.execute({ pluginId: PROBE, handlerId: 'write-plugin-out', input: { path: 'out/x.txt' } }));
    const undeclared = await backend.execute({ pluginId: PROBE, handlerId: 'write-file', input: { path: 'out/y.txt' } });
    expectError(undeclared, 'PERMISSION_DENIED');
    expect(String(undeclared.error.details.resource)).toMatch(/^fs\.write:/);
  });

  it('symlinks cannot be planted (a way out of a path-based sandbox) → PERMISSION_DENIED', async () => {
    const result = await make().execute({ pluginId: PROBE, handlerId: 'symlink', input: { target: outside } });
    expectError(result, 'PERMISSION_DENIED');
    // Node 20/22 refuse every symlink to a process without full fs access (resource fs.symlink);
    // Node 24 checks read access to the link's target instead, which lies outside the grant.
    const resource = String(result.error.details.resource);
    expect(resource === 'fs.symlink' || resource.startsWith(`fs.read:${outside}`), resource).toBe(true);
  });

  it('child processes and workers are refused unless declared and granted', async () => {
    const backend = make();
    const spawnResult = await backend.execute({ pluginId: HOSTILE, handlerId: 'spawn-grandchild' });
    expectError(spawnResult, 'PERMISSION_DENIED');
    expect(spawnResult.error.details).toMatchObject({ resource: 'childProcess' });
    const worker = await backend.execute({ pluginId: PROBE, handlerId: 'worker' });
    expectError(worker, 'PERMISSION_DENIED');
    expect(worker.error.details).toMatchObject({ resource: 'worker' });
    // Declared but not granted: refused before any code runs.
    const preflight = await backend.execute({ pluginId: PROBE, handlerId: 'grandchild', input: { wait: false } });
    expectError(preflight, 'PERMISSION_DENIED');
    expect(preflight.error.details).toMatchObject({ phase: 'preflight', missing: ['childProcess'] });
  });

  it.each(['off', 'required'] as const)('the child runs in its workspace with the permission flags and the manifest heap limit (sandbox %s)', async (sandbox) => {
    const backend = make({ sandbox });
    const result = await backend.execute({ pluginId: PROBE, handlerId: 'whoami-small-heap' });
    expectOk(result);
    const data = result.data as { pid: number; ppid: number; cwd: string; workspace: string; execArgv: string[]; heapLimitMb: number };
    if (sandbox === 'off') expect(data.pid).toBe(result.meta.pid);
    // In its own pid namespace, Node is pid 2 under bubblewrap's init; meta.pid is bubblewrap's host pid.
    else expect([data.pid, data.ppid]).toEqual([2, 1]);
    expect(data.pid).not.toBe(process.pid);
    expect(data.cwd).toBe(data.workspace);
    expect(data.execArgv).toContain(detectPermissionFlag());
    expect(data.execArgv).toContain('--max-old-space-size=96');
    expect(data.execArgv.some((a) => a.startsWith('--allow-child-process'))).toBe(false);
    // V8's heap limit is old space (96) plus the young generation, whose default size grew in
    // newer Nodes (about 288 MB in all on Node 24); unlimited, it is gigabytes on this machine.
    expect(data.heapLimitMb).toBeLessThan(96 + 256);
  });

  it('enforcePermissions: false with sandbox off runs the child unrestricted (documented escape hatch)', async () => {
    const target = path.join(outside, 'secret.txt');
    const result = await make({ enforcePermissions: false, sandbox: 'off' }).execute({ pluginId: PROBE, handlerId: 'read-file', input: { path: target } });
    expectOk(result);
    expect(result.data).toEqual({ text: 'host secret' });
  });

  it('enforcePermissions: false under the sandbox: a host file outside the grants does not exist for the child', async () => {
    const target = path.join(outside, 'secret.txt');
    const result = await make({ enforcePermissions: false, sandbox: 'required' }).execute({ pluginId: PROBE, handlerId: 'read-file', input: { path: target } });
    expectError(result, 'HANDLER_ERROR');
    expect(result.error.message).toContain('ENOENT');
    expect(JSON.stringify(result)).not.toContain('host secret');
  });
});

describe('environment', () => {
  it('the child sees only the allow-list and the env names the handler declared and was granted', async () => {
    process.env.KB_PROBE_TOKEN = 'granted-value';
    process.env.KB_HOST_SECRET = 'never-leaks';
    process.env.NODE_OPTIONS = '--max-old-space-size=50';
    try {
      const backend = make({ permissions: { env: ['KB_PROBE_TOKEN'] }, baseEnv: ['PATH', 'NODE_OPTIONS'] });
      const result = await backend.execute({ pluginId: PROBE, handlerId: 'env' });
      expectOk(result);
      const { names, token } = result.data as { names: string[]; token: string | null };
      expect(token).toBe('granted-value');
      expect(names).not.toContain('KB_HOST_SECRET');
      expect(names).not.toContain('NODE_OPTIONS');
      expect(names.every((n) => ['PATH', 'KB_PROBE_TOKEN'].includes(n))).toBe(true);
      // A handler that declared nothing gets none of it.
      const hostile = await backend.execute({ pluginId: HOSTILE, handlerId: 'read-env', input: { name: 'KB_PROBE_TOKEN' } });
      expectOk(hostile);
      expect(hostile.data).toMatchObject({ value: null });
      expect((hostile.data as { names: string[] }).names).not.toContain('KB_PROBE_TOKEN');
    } finally {
      delete process.env.KB_PROBE_TOKEN;
      delete process.env.KB_HOST_SECRET;
      delete process.env.NODE_OPTIONS;
    }
  });
});

describe('stdout and stderr', () => {
  it('are delivered to onLog line by line, with stream stdout/stderr, long lines cut', async () => {
    const logs: LogEntry[] = [];
    const backend = make({ maxLogLineLength: 100 });
    const result = await backend.execute({ pluginId: PROBE, handlerId: 'prints', input: { lines: 2, long: 500 } }, { onLog: (l) => logs.push(l) });
    expectOk(result);
    const out = logs.filter((l) => l.stream === 'stdout').map((l) => l.message);
    expect(out.slice(0, 2)).toEqual(['line 0', 'line 1']);
    expect(out[2]).toMatch(/^y{100}… \[400 more characters\]$/);
    expect(out[3]).toBe('no newline at the end');
    expect(logs.filter((l) => l.stream === 'stderr')).toMatchObject([{ message: 'to stderr', level: 'error', executionId: result.meta.executionId }]);
  });

  it.each(['TIMEOUT', 'ABORTED'])('a last line without its newline is delivered when the execution ends %s', async (code) => {
    const logs: LogEntry[] = [];
    const backend = make();
    const controller = new AbortController();
    const stdout = () => logs.filter((l) => l.stream === 'stdout').map((l) => l.message);
    const running = backend.execute(
      { pluginId: PROBE, handlerId: 'prints', input: { lines: 1, hang: true } },
      { onLog: (l) => logs.push(l), signal: controller.signal, ...(code === 'TIMEOUT' ? { timeoutMs: 1500 } : {}) },
    );
    if (code === 'ABORTED') {
      expect(await eventually(async () => stdout().length === 1)).toBe(true);
      // The partial line is read by now too (one write after the complete one); give it a moment.
      await new Promise((resolve) => setTimeout(resolve, 200));
      controller.abort();
    }
    const result = await running;
    expect(result).toMatchObject({ ok: false, error: { code } });
    expect(stdout()).toEqual(['line 0', 'no newline at the end']);
  });

  it('a line longer than a pipe read (many reads) is one entry, cut once, with its real length', async () => {
    const logs: LogEntry[] = [];
    const backend = make({ maxLogLineLength: 100 });
    const result = await backend.execute({ pluginId: PROBE, handlerId: 'prints', input: { lines: 0, long: 500_000 } }, { onLog: (l) => logs.push(l) });
    expectOk(result);
    const out = logs.filter((l) => l.stream === 'stdout').map((l) => l.message);
    expect(out).toEqual([`${'y'.repeat(100)}… [499900 more characters]`, 'no newline at the end']);
  });
});

describe('warm spares (prespawn)', () => {
  it('keeps a spare booted for the profile in use; executions on spares are fresh processes', async () => {
    const backend = make({ prespawn: 1 });
    const first = await backend.execute({ pluginId: PROBE, handlerId: 'whoami' });
    expectOk(first);
    expect(await eventually(async () => (await runners(backend)).spares.ready === 1)).toBe(true);
    const second = await backend.execute({ pluginId: PROBE, handlerId: 'whoami' });
    expectOk(second);
    const b = second.data as { pid: number; polluted: boolean; cwd: string; workspace: string };
    expect(second.meta.pid).not.toBe(first.meta.pid);
    // The previous execution polluted Object.prototype in its own process only.
    expect(b.polluted).toBe(false);
    expect(b.cwd).toBe(b.workspace);
    const stats = await runners(backend);
    expect(stats.fromSpare).toBe(1);
    expect(stats.cold).toBe(1);
  });

  it('a spare is still restricted: outside writes are denied, the workspace root is its widest grant', async () => {
    const backend = make({ prespawn: 1 });
    expectOk(await backend.execute({ pluginId: HOSTILE, handlerId: 'read-env' }));
    await eventually(async () => (await runners(backend)).spares.ready === 1);
    const target = path.join(outside, 'escaped.txt');
    const result = await backend.execute({ pluginId: HOSTILE, handlerId: 'write-outside', input: { path: target } });
    expectError(result, 'PERMISSION_DENIED');
    expect((await runners(backend)).fromSpare).toBe(1);
    await expect(stat(target)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('a spare that dies while it boots is not used: the execution that took it starts a child of its own', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'kb-fake-node-'));
    try {
      // This Node, except that the first child started while `dies` is there exits in its boot, a second after it began.
      const fake = path.join(dir, 'fake-node');
      const dies = path.join(dir, 'dies');
      const node = JSON.stringify(process.execPath);
      await writeFile(fake, `#!/bin/sh\nif [ "$1" != "-e" ] && mv ${JSON.stringify(dies)} ${JSON.stringify(`${dies}.taken`)} 2>/dev/null; then sleep 1; exit 3; fi\nexec ${node} "$@"\n`);
      await chmod(fake, 0o755);
      const backend = make({ execPath: fake, sandbox: 'off', prespawn: 1 });
      expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }));
      expect(await eventually(async () => (await runners(backend)).spares.ready === 1)).toBe(true);
      // The booted spare serves the next execution; the spare started in its place is the one that dies.
      await writeFile(dies, '');
      expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 2 }));
      expect(await eventually(async () => (await runners(backend)).spares.booting === 1)).toBe(true);
      const third = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 3 });
      expectOk(third);
      expect(third.data).toBe(3);
      await expect(stat(`${dies}.taken`)).resolves.toBeTruthy();
      const stats = await runners(backend);
      expect(stats).toMatchObject({ cold: 2, fromSpare: 1 });
      expect(stats.spares.used).toBe(2);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('an execution stopped while the spare taken for it still boots is counted as killed, as one stopped on its child is', async () => {
    const backend = make({ prespawn: 1 });
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }));
    for (let i = 0; i < 6; i++) {
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 1);
      expectError(await backend.execute({ pluginId: BASIC, handlerId: 'never-resolves' }, { signal: controller.signal }), 'ABORTED');
    }
    const stats = await runners(backend);
    // Each aborted one that got a child (spawned cold, or a spare taken for it) was killed with it; the first ran cold and answered.
    expect(stats.killed).toBe(stats.cold - 1 + stats.spares.used);
  });

  /**
   * A backend with `prespawn: 1` whose Node starts `stallSeconds` late once `stall()` is called,
   * its one spare served: the spare booted in its place stalls, and the next execution takes it.
   */
  async function stallingSpares(dir: string, stallSeconds: number, options: SubprocessBackendOptions = {}) {
    const fake = path.join(dir, 'fake-node');
    const slow = path.join(dir, 'slow');
    await writeFile(fake, `#!/bin/sh\nif [ "$1" != "-e" ] && [ -e ${JSON.stringify(slow)} ]; then sleep ${stallSeconds}; fi\nexec ${JSON.stringify(process.execPath)} "$@"\n`);
    await chmod(fake, 0o755);
    const backend = make({ execPath: fake, sandbox: 'off', prespawn: 1, ...options });
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }));
    expect(await eventually(async () => (await runners(backend)).spares.ready === 1)).toBe(true);
    /** From now on a Node starts late; the ready spare serves one more execution, and the one booted in its place stalls. */
    const stall = async () => {
      await writeFile(slow, '');
      expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 2 }));
    };
    /** An execution that takes the stalled spare, stopped while the spare boots. */
    const stoppedWhileBooting = async () => {
      const controller = new AbortController();
      const aborted = backend.execute({ pluginId: BASIC, handlerId: 'never-resolves' }, { signal: controller.signal });
      expect(await eventually(async () => (await runners(backend)).spares.used === 2)).toBe(true);
      // Nodes started from now on (the spare that replaces it) start at once; the one taken sleeps on.
      await rm(slow);
      controller.abort();
      expectError(await aborted, 'ABORTED');
    };
    return { backend, stall, stoppedWhileBooting };
  }

  it('an execution stopped while the spare taken for it boots has that spare replaced: prespawn is kept booted, not left a spare short', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'kb-fake-node-'));
    try {
      const { backend, stall, stoppedWhileBooting } = await stallingSpares(dir, 10);
      await stall();
      await stoppedWhileBooting();
      expect(await eventually(async () => (await runners(backend)).killed === 1)).toBe(true);
      // Before: the spare killed with it was not replaced, and no spare was booted until the next execution.
      expect(await eventually(async () => (await runners(backend)).spares.ready === 1)).toBe(true);
      expect(await runners(backend)).toMatchObject({ fromSpare: 1, cold: 1 });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it.runIf(hasProc)('a spare taken by an execution stopped while it boots is killed at the stop, not once it has booted: nothing waits on for that execution', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'kb-fake-node-'));
    try {
      // Half a minute late to start (a stalled start: a loaded machine, a hung mount).
      const { backend, stall, stoppedWhileBooting } = await stallingSpares(dir, 30, { handshakeTimeoutMs: 60_000 });
      const before = new Set(childrenOf());
      await stall();
      expect(await eventually(() => childrenOf().some((pid) => !before.has(pid)))).toBe(true);
      const stalled = childrenOf().filter((pid) => !before.has(pid));
      await stoppedWhileBooting();
      // Before: it stalled on until its start ended (here 30 s; up to handshakeTimeoutMs), and the
      // stopped execution's slot and workspace were held until then.
      expect(await eventually(() => stalled.every((pid) => !isAlive(pid)))).toBe(true);
      expect(await eventually(async () => (await runners(backend)).killed === 1)).toBe(true);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('the spares of a plugin unregistered are killed: no process is kept booted for it, the spares go to the profiles still in use', async () => {
    const before = new Set(hasProc ? childrenOf() : []);
    const backend = make({ prespawn: 2 });
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }));
    expect(await eventually(async () => (await runners(backend)).spares.ready === 2)).toBe(true);
    const pids = hasProc ? childrenOf().filter((pid) => !before.has(pid)) : [];
    expect(await backend.unregisterPlugin(BASIC)).toBe(true);
    // Before: both stayed booted for a plugin no execution can name any more, until shutdown.
    expect(await eventually(async () => (await runners(backend)).live === 0)).toBe(true);
    expect((await runners(backend)).spares).toMatchObject({ ready: 0, booting: 0, discarded: 2 });
    for (const pid of pids) expect(isAlive(pid)).toBe(false);
    expectOk(await backend.execute({ pluginId: PROBE, handlerId: 'whoami' }));
    expect(await eventually(async () => (await runners(backend)).spares.ready === 2)).toBe(true);
  });

  it("a reload that changes how a handler's children start (its heap limit: its spares' profile) kills the spares booted for the old one: the spares go to the profile in use", async () => {
    const plugin = await mkdtemp(path.join(os.tmpdir(), 'kb-reloaded-profile-'));
    try {
      const manifest = (memoryMb: number) => JSON.stringify({ id: '@test/reloaded-profile', version: '1.0.0', handlers: { run: { entry: './run.mjs', memoryMb } } });
      await writeFile(path.join(plugin, 'run.mjs'), 'export default async (input) => { await new Promise((r) => setTimeout(r, input.ms)); return process.pid; };\n');
      await writeFile(path.join(plugin, 'kb.plugin.json'), manifest(128));
      const backend = make({ prespawn: 2, plugins: [plugin] });
      const run = (ms: number) => backend.execute({ pluginId: '@test/reloaded-profile', handlerId: 'run', input: { ms } });
      expectOk(await run(0));
      expect(await eventually(async () => (await runners(backend)).spares.ready === 2)).toBe(true);
      await writeFile(path.join(plugin, 'kb.plugin.json'), manifest(160));
      await backend.reloadPlugin('@test/reloaded-profile');
      // The first under the new manifest starts cold (no spare has its profile); the spares follow it.
      expectOk(await run(0));
      expect(await eventually(async () => (await runners(backend)).spares.ready === 2)).toBe(true);
      const { fromSpare } = await runners(backend);
      // Before: one of the two was still the old profile's, which no execution can take: one of these ran cold.
      for (const result of await Promise.all([run(300), run(300)])) expectOk(result);
      expect((await runners(backend)).fromSpare - fromSpare).toBe(2);
    } finally {
      await rm(plugin, { recursive: true, force: true });
    }
  });

  it('a reload that changes a handler\'s profile while an execution waits for the spare it took: that execution\'s stop boots no spare for the old profile', async () => {
    const plugin = await mkdtemp(path.join(os.tmpdir(), 'kb-reloaded-profile-'));
    const dir = await mkdtemp(path.join(os.tmpdir(), 'kb-fake-node-'));
    try {
      const id = '@test/reloaded-while-booting';
      const manifest = (memoryMb: number) => JSON.stringify({ id, version: '1.0.0', handlers: { run: { entry: './run.mjs', memoryMb } } });
      await writeFile(path.join(plugin, 'run.mjs'), 'export default async () => process.pid;\n');
      await writeFile(path.join(plugin, 'kb.plugin.json'), manifest(128));
      // This Node, except that one started while `slow` is there waits until it is gone.
      const fake = path.join(dir, 'fake-node');
      const slow = path.join(dir, 'slow');
      await writeFile(fake, `#!/bin/sh\nif [ "$1" != "-e" ]; then while [ -e ${JSON.stringify(slow)} ]; do sleep 0.02; done; fi\nexec ${JSON.stringify(process.execPath)} "$@"\n`);
      await chmod(fake, 0o755);
      const backend = make({ execPath: fake, sandbox: 'off', prespawn: 1, plugins: [plugin] });
      expectOk(await backend.execute({ pluginId: id, handlerId: 'run' }));
      expect(await eventually(async () => (await runners(backend)).spares.ready === 1)).toBe(true);
      await writeFile(slow, '');
      // Served by the ready spare; the one booted in its place waits, and the next execution takes it.
      expectOk(await backend.execute({ pluginId: id, handlerId: 'run' }));
      const controller = new AbortController();
      const aborted = backend.execute({ pluginId: id, handlerId: 'run' }, { signal: controller.signal });
      expect(await eventually(async () => (await runners(backend)).spares.used === 2)).toBe(true);
      await writeFile(path.join(plugin, 'kb.plugin.json'), manifest(160));
      await backend.reloadPlugin(id);
      await rm(slow);
      controller.abort();
      expectError(await aborted, 'ABORTED');
      // Before: the stop refilled the old profile's spare, kept booted for a profile no execution has.
      expect(await eventually(async () => (await runners(backend)).live === 0), JSON.stringify((await runners(backend)).spares)).toBe(true);
      expect((await runners(backend)).spares).toMatchObject({ ready: 0, booting: 0, spawned: 2 });
      // The new profile's first execution runs cold; the spares follow it.
      expectOk(await backend.execute({ pluginId: id, handlerId: 'run' }));
      expect(await eventually(async () => (await runners(backend)).spares.ready === 1)).toBe(true);
      expectOk(await backend.execute({ pluginId: id, handlerId: 'run' }));
      expect(await runners(backend)).toMatchObject({ cold: 2, fromSpare: 2 });
    } finally {
      await rm(plugin, { recursive: true, force: true });
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('two plugin ids registered from one folder: unregistering one keeps the spares the other uses', async () => {
    const manifest = JSON.parse(await readFile(path.join(fixturePlugins.basic, 'kb.plugin.json'), 'utf8')) as { id: string };
    const twin = '@conformance/basic-twin';
    const backend = make({ prespawn: 1, plugins: [fixturePlugins.basic, { root: fixturePlugins.basic, manifest: { ...manifest, id: twin } }] });
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }));
    expect(await eventually(async () => (await runners(backend)).spares.ready === 1)).toBe(true);
    // The twin's executions share the spares of the profile: same folder, same permissions.
    expectOk(await backend.execute({ pluginId: twin, handlerId: 'echo', input: 2 }));
    expect(await eventually(async () => (await runners(backend)).spares.ready === 1)).toBe(true);
    expect(await backend.unregisterPlugin(BASIC)).toBe(true);
    // Before: the spare was killed with the folder's, and the twin's next execution started cold.
    expect((await runners(backend)).spares).toMatchObject({ ready: 1, discarded: 0 });
    expectOk(await backend.execute({ pluginId: twin, handlerId: 'echo', input: 3 }));
    expect(await runners(backend)).toMatchObject({ cold: 1, fromSpare: 2 });
    // The twin gone too, nothing is kept booted for the folder.
    expect(await eventually(async () => (await runners(backend)).spares.ready === 1)).toBe(true);
    expect(await backend.unregisterPlugin(twin)).toBe(true);
    expect(await eventually(async () => (await runners(backend)).live === 0)).toBe(true);
  });

  it('a plugin unregistered while its execution runs on a spare gets no spare booted for it when that execution ends', async () => {
    const backend = make({ prespawn: 1 });
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }));
    expect(await eventually(async () => (await runners(backend)).spares.ready === 1)).toBe(true);
    let started = false;
    // Shorter than the refill's 100 ms: the spare it took is refilled once its result is out.
    const running = backend.execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 50 } }, { onEvent: () => (started = true) });
    expect(await eventually(() => started)).toBe(true);
    expect(await backend.unregisterPlugin(BASIC)).toBe(true);
    expectOk(await running);
    // Before: the refill booted a spare for the unregistered plugin's folder, kept until another profile was used.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const stats = await runners(backend);
    expect(stats.fromSpare).toBe(1);
    expect(stats.spares).toMatchObject({ ready: 0, booting: 0 });
    expect(stats.live).toBe(0);
  });

  it.runIf(hasProc)('spares that die while idle do not switch prespawn off while spares in between serve executions that fail', async () => {
    const backend = make({ prespawn: 1 });
    const before = new Set(childrenOf());
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }));
    for (let death = 1; death <= 4; death++) {
      // (The waits are not asserted: switched off, no spare boots, and the checks at the end say so.)
      await eventually(async () => (await runners(backend)).spares.ready === 1);
      // The idle spare dies (an OOM killer, a supervisor's sweep), and a new one boots in its place.
      const { spawned } = (await runners(backend)).spares;
      for (const pid of childrenOf().filter((p) => !before.has(p))) process.kill(pid, 'SIGKILL');
      await eventually(async () => (await runners(backend)).spares.spawned > spawned);
      await eventually(async () => (await runners(backend)).spares.ready === 1);
      // A spare serves an execution whose handler fails: it booted and ran, so spares work.
      expectError(await backend.execute({ pluginId: BASIC, handlerId: 'throws' }), 'HANDLER_ERROR');
    }
    // Before: only a succeeding execution reset the count, and the third death switched prespawn off.
    expect((await backend.health()).problems ?? []).not.toContainEqual(expect.stringContaining('prespawn switched off'));
    expect((await runners(backend)).fromSpare).toBe(4);
  });

  it('spares that die while an execution waits for their boot count towards switching prespawn off, as spares dying idle do', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'kb-fake-node-'));
    try {
      // This Node, except that a spare (started outside the workspace root) waits for a `release`
      // file, takes it, and exits in its boot: each release ends one spare, taken for an execution by then.
      const fake = path.join(dir, 'fake-node');
      const release = path.join(dir, 'release');
      const workspaces = await realpath(root);
      const script = [
        '#!/bin/sh',
        `case "$(pwd -P)/" in ${JSON.stringify(`${workspaces}/`)}*) ;; *) if [ "$1" != "-e" ]; then`,
        `  until mv ${JSON.stringify(release)} ${JSON.stringify(`${release}.taken`)} 2>/dev/null; do sleep 0.02; done; exit 3`,
        'fi ;; esac',
        `exec ${JSON.stringify(process.execPath)} "$@"`,
      ];
      await writeFile(fake, `${script.join('\n')}\n`);
      await chmod(fake, 0o755);
      const backend = make({ execPath: fake, sandbox: 'off', prespawn: 1 });
      expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 0 }));
      for (let death = 1; death <= 3; death++) {
        expect(await eventually(async () => (await runners(backend)).spares.booting === 1)).toBe(true);
        const running = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: death });
        expect(await eventually(async () => (await runners(backend)).spares.used === death)).toBe(true);
        await writeFile(release, '');
        // The execution runs on a child of its own once the spare it took is gone.
        expectOk(await running);
      }
      // Before: a spare taken while it booted was never counted, however many died: prespawn stayed on,
      // and every execution waited for one more spare to die before it started a child of its own.
      expect((await backend.health()).problems ?? []).toContainEqual(expect.stringMatching(/^prespawn switched off/));
      expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 4 }));
      expect(await runners(backend)).toMatchObject({ cold: 5, fromSpare: 0, spares: { used: 3, booting: 0 } });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('spares follow the profile in use and are killed on shutdown', async () => {
    const before = new Set(hasProc ? childrenOf() : []);
    const backend = make({ prespawn: 2 });
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }));
    expect(await eventually(async () => (await runners(backend)).spares.ready === 2)).toBe(true);
    const pids = hasProc ? childrenOf().filter((pid) => !before.has(pid)) : [];
    if (hasProc) expect(pids.length).toBe(2);
    await backend.shutdown();
    const stats = await runners(backend);
    expect(stats.live).toBe(0);
    expect(stats.spares).toMatchObject({ ready: 0, booting: 0 });
    for (const pid of pids) expect(isAlive(pid)).toBe(false);
  });
});

describe('shutdown', () => {
  it.runIf(hasProc)('leaves no child process behind, running or spare', async () => {
    const before = new Set(childrenOf());
    const backend = make({ prespawn: 1, permissions: { childProcess: true }, maxConcurrency: 4 });
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo' }));
    const running = [
      backend.execute({ pluginId: BASIC, handlerId: 'never-resolves' }, { timeoutMs: 60_000 }),
      backend.execute({ pluginId: HOSTILE, handlerId: 'busy-loop' }, { timeoutMs: 60_000 }),
      backend.execute({ pluginId: PROBE, handlerId: 'grandchild' }, { timeoutMs: 60_000 }),
    ];
    expect(await eventually(async () => (await runners(backend)).running === 3)).toBe(true);
    // The three running children and the spare refilled behind the one that took it.
    expect(await eventually(async () => (await runners(backend)).spares.booting + (await runners(backend)).spares.ready === 1)).toBe(true);
    expect(childrenOf().filter((pid) => !before.has(pid)).length).toBeGreaterThanOrEqual(4);
    await backend.shutdown({ timeoutMs: 100 });
    for (const result of await Promise.all(running)) expectError(result, 'SHUTTING_DOWN');
    expect(childrenOf().filter((pid) => !before.has(pid))).toEqual([]);
    expect((await runners(backend)).live).toBe(0);
  });
});

/** Runs an ES module script in a Node of its own under the permission model with these grants (stdout, stderr). */
function runUnderPermissionModel(grants: string[], script: string, timeout = 30_000) {
  return spawnSync(process.execPath, [detectPermissionFlag()!, ...grants, '--no-warnings', '--input-type=module', '-e', script], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH ?? '' },
    timeout,
  });
}

describe("a host under Node's permission model", () => {
  it('without --allow-child-process: each sandbox setting fails the execution saying so and naming the flag (not INTERNAL_ERROR), and health() says it before any', () => {
    const entry = new URL('../dist/index.js', import.meta.url).href;
    const script = `import { SubprocessBackend } from ${JSON.stringify(entry)};
for (const sandbox of ['off', 'auto', 'required']) {
  const backend = new SubprocessBackend({ sandbox, plugins: [${JSON.stringify(fixturePlugins.basic)}], workspace: false });
  const r = await backend.execute({ pluginId: '@conformance/basic', handlerId: 'echo', input: 1 });
  console.log(JSON.stringify(r.ok ? { ok: true } : { code: r.error.code, reason: r.error.details.reason, message: r.error.message }));
  await backend.shutdown();
}
const idle = new SubprocessBackend({ sandbox: 'off' });
console.log(JSON.stringify({ code: 'health', reason: 'problems', message: (await idle.health()).problems.join(' | ') }));
await idle.shutdown();`;
    const run = runUnderPermissionModel(['--allow-fs-read=*', '--allow-fs-write=*'], script, 60_000);
    const said = run.stdout.trim().split('\n').map((line) => JSON.parse(line) as { code: string; reason: string; message: string });
    expect(said.map((r) => [r.code, r.reason])).toEqual([
      ['WORKER_CRASHED', 'start-failed'],
      ['WORKER_CRASHED', 'start-failed'],
      ['WORKER_CRASHED', 'sandbox'],
      ['health', 'problems'],
    ]);
    for (const r of said) expect(r.message).toContain(`the host process runs under Node's permission model (${detectPermissionFlag()}) without --allow-child-process`);
  });

  it("without --allow-child-process: a refused start is counted in stats().runners.crashed['start-failed'], as every other child that could not start", () => {
    const entry = new URL('../dist/index.js', import.meta.url).href;
    const script = `import { SubprocessBackend } from ${JSON.stringify(entry)};
const backend = new SubprocessBackend({ sandbox: 'off', plugins: [${JSON.stringify(fixturePlugins.basic)}], workspace: false });
const r = await backend.execute({ pluginId: '@conformance/basic', handlerId: 'echo', input: 1 });
const { runners } = await backend.stats();
console.log(JSON.stringify({ reason: r.ok ? 'ok' : r.error.details.reason, crashed: runners.crashed['start-failed'] }));
await backend.shutdown();`;
    const run = runUnderPermissionModel(['--allow-fs-read=*', '--allow-fs-write=*'], script);
    // Before: { reason: 'start-failed', crashed: 0 }: the refusal was thrown past the count.
    expect(JSON.parse(run.stdout.trim())).toEqual({ reason: 'start-failed', crashed: 1 });
  });

  it('with --allow-child-process and read grants of its own project only (not /node_modules above it): the execution runs', () => {
    const project = path.resolve(new URL('../../..', import.meta.url).pathname);
    const entry = new URL('../dist/index.js', import.meta.url).href;
    const script = `import { SubprocessBackend } from ${JSON.stringify(entry)};
const backend = new SubprocessBackend({ sandbox: 'off', plugins: [${JSON.stringify(fixturePlugins.basic)}], workspace: false });
const r = await backend.execute({ pluginId: '@conformance/basic', handlerId: 'echo', input: 1 });
console.log(JSON.stringify(r.ok ? { ok: true, data: r.data } : { code: r.error.code, message: r.error.message }));
await backend.shutdown();`;
    const run = runUnderPermissionModel([`--allow-fs-read=${project}`, '--allow-child-process'], script);
    expect(run.stderr).toBe('');
    // Before: WORKER_CRASHED "… without --allow-child-process …", which it had: existsSync('/node_modules') threw ERR_ACCESS_DENIED.
    expect(JSON.parse(run.stdout.trim())).toEqual({ ok: true, data: 1 });
  });
});

describe("a host under Node's permission model that may not read every file", () => {
  it.runIf(process.platform === 'linux')('the sandbox says why it cannot be set up (not "bubblewrap not found; install the bubblewrap package"): required refuses, auto runs children unsandboxed saying so', () => {
    const project = path.resolve(new URL('../../..', import.meta.url).pathname);
    const entry = new URL('../dist/index.js', import.meta.url).href;
    const script = `import { SubprocessBackend } from ${JSON.stringify(entry)};
process.on('warning', () => {});
try { new SubprocessBackend({ sandbox: 'required' }); console.log(JSON.stringify({ required: 'made' })); } catch (e) { console.log(JSON.stringify({ required: e.code, message: e.message })); }
const backend = new SubprocessBackend({ sandbox: 'auto', plugins: [${JSON.stringify(fixturePlugins.basic)}], workspace: false });
console.log(JSON.stringify({ auto: (await backend.health()).isolation.active, reason: (await backend.health()).isolation.reason }));
await backend.shutdown();`;
    const run = runUnderPermissionModel([`--allow-fs-read=${project}`, '--allow-child-process'], script);
    expect(run.stderr).toBe('');
    const reason = `the host process runs under Node's permission model (${detectPermissionFlag()}) without --allow-fs-read=*, and setting up bubblewrap's sandbox reads files outside its grants (bwrap on PATH, Node and the libraries it loads): start it with --allow-fs-read=* as well, or set sandbox: 'off'`;
    // Before: "bubblewrap not found ("bwrap" on PATH); install the bubblewrap package", on a host where it is installed.
    expect(run.stdout.trim().split('\n').map((line) => JSON.parse(line) as unknown)).toEqual([
      { required: 'VALIDATION_ERROR', message: `sandbox: 'required' cannot work here: ${reason}` },
      { auto: 'process', reason },
    ]);
  });
});

describe('options', () => {
  it('rejects invalid options with VALIDATION_ERROR naming each', () => {
    expect(() => new SubprocessBackend({ prespawn: -1, killGraceMs: 'x' as never, baseEnv: [1] as never })).toThrow(/prespawn[\s\S]*killGraceMs[\s\S]*baseEnv/);
  });

  it('refuses an unknown option, naming the nearest known one, instead of ignoring it', () => {
    let thrown: unknown;
    try {
      new SubprocessBackend({ prespwn: 1, cancelGraceMS: 5, colour: 'red' } as never);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(ValidationError);
    const error = thrown as ValidationError;
    expect(error.details.issues).toEqual([
      { path: 'prespwn', message: 'unknown option; did you mean "prespawn"?' },
      { path: 'cancelGraceMS', message: 'unknown option; did you mean "cancelGraceMs"?' },
      { path: 'colour', message: 'unknown option' },
    ]);
    expect(error.message).toContain('  - prespwn: unknown option; did you mean "prespawn"?');
  });
});

describe('ExecuteOptions.outputPace (a queue worker whose caller is behind)', () => {
  it('the child\'s pipes are read no further while the pace is pending, so its writes wait; then every event arrives', async () => {
    const n = 20_000;
    let delivered = 0;
    let whenOpened = -1;
    let gate: Promise<void> | undefined;
    const onEvent = () => {
      if (++delivered !== 100) return;
      let open!: () => void;
      gate = new Promise((resolve) => (open = resolve));
      setTimeout(() => {
        whenOpened = delivered;
        gate = undefined;
        open();
      }, 1500);
    };
    const result = await make().execute({ pluginId: HOSTILE, handlerId: 'event-flood', input: { n, kb: 1 } }, { timeoutMs: 30_000, onEvent, outputPace: () => gate });
    expectOk(result);
    expect(delivered).toBe(n);
    // At most what the pipe and the chunk being read held past the gate: far from the end.
    expect(whenOpened).toBeGreaterThanOrEqual(100);
    expect(whenOpened).toBeLessThan(1000);
  });

  for (const [which, pluginId, handlerId] of [['', BASIC, 'respects-signal'], [', its half line delivered at the stop', PROBE, 'respects-signal-mid-line']] as const) {
    it(`an abort while the pace is pending${which}: a child that honours ctx.signal and answers is read, and discarded then, not left running to the end of its grace`, async () => {
      // A grace as long as the time limit: held, the child's answer would be read only once SIGTERM ended it.
      const backend = make({ cancelGraceMs: 60_000 });
      const controller = new AbortController();
      let behind: Promise<void> | undefined;
      const onEvent = () => {
        // Behind from its first event on, never caught up; aborted once its pipes are no longer read.
        behind = new Promise(() => {});
        setTimeout(() => controller.abort(), 100);
      };
      const logs: LogEntry[] = [];
      const result = await backend.execute({ pluginId, handlerId }, { signal: controller.signal, timeoutMs: 60_000, onEvent, onLog: (entry) => void logs.push(entry), outputPace: () => behind });
      expectError(result, 'ABORTED');
      expect(result.meta.artifacts).toEqual(['signal-ABORTED.txt']);
      // It answered: the host read that, and discarded it then.
      expect(await eventually(() => !isAlive(result.meta.pid!))).toBe(true);
      if (handlerId === 'respects-signal-mid-line') expect(logs.map((entry) => entry.message)).toEqual(['half a line']);
    });
  }

  it('a pace that gives a thenable whose then() throws is the host\'s mistake, thrown nowhere: no message of the child is lost, every event arrives', async () => {
    const outputPace = () => ({ then: () => { throw new Error('the pace broke'); } }) as unknown as Promise<void>;
    const thrown: unknown[] = [];
    const onUncaught = (error: unknown) => void thrown.push(error);
    process.on('uncaughtException', onUncaught);
    try {
      const n = 2000;
      let delivered = 0;
      const result = await make().execute(
        { pluginId: HOSTILE, handlerId: 'event-flood', input: { n, kb: 1 } },
        { timeoutMs: 30_000, onEvent: () => void delivered++, outputPace },
      );
      expectOk(result);
      expect(delivered).toBe(n);
      expect(thrown).toEqual([]);
    } finally {
      process.off('uncaughtException', onUncaught);
    }
  });
});

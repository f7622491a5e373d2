/**
 * The host stops a child at its time limit; a host that is itself stopped (SIGSTOP, a queue
 * worker frozen) cannot. Its child then stops itself, a little past the limit: the handler's
 * ctx.signal fires (TIMEOUT), and the process exits.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasProc, probePlugin } from './helpers.js';
import { hostFailure, startHost } from './sandbox-helpers.js';

let root: string;

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'kb-stopped-host-'));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Pids whose parent is `parent` and that still run (not zombies waiting for it). */
function runningChildren(parent: number): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((pid) => {
      try {
        const fields = readFileSync(`/proc/${pid}/stat`, 'latin1').split(') ')[1]!.split(' ');
        return Number(fields[1]) === parent && fields[0] !== 'Z';
      } catch {
        return false;
      }
    })
    .map(Number);
}

/** Files named `name` anywhere under `dir`. */
function found(dir: string, name: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((entry) => path.basename(entry) === name);
}

describe.runIf(hasProc)('a child whose host is stopped past the time limit', () => {
  it.each([
    ['a handler that waits', 'respects-signal'],
    ["a handler that holds up its process's exit (process.reallyExit replaced, an 'exit' listener that throws)", 'holds-exit'],
    // It answers its abort with the timer's AbortError: before, that answer went to the host as the result (HANDLER_ERROR).
    ['a handler that rejects once its signal fires (AbortError)', 'rejects-on-signal'],
  ])('cancels %s (ctx.signal: TIMEOUT) and ends on its own; the host, resumed, reports TIMEOUT', async (_, handlerId) => {
    // Room for a cold child's start (the sandbox, Node's boot) on a loaded machine before the handler runs.
    const timeoutMs = 3000;
    const host = startHost('stopped-host.mjs', { plugin: probePlugin, root, timeoutMs, handlerId });
    try {
      expect(await host.waitFor('listening', 30_000), hostFailure(host, 'the handler running')).toEqual({ listening: true });
      const pid = host.child.pid!;
      process.kill(pid, 'SIGSTOP');
      // The limit, the child's 2 s backstop and its 1 s grace, and slack for a loaded machine.
      const until = Date.now() + timeoutMs + 2000 + 1000 + 4000;
      while (Date.now() < until && runningChildren(pid).length > 0) await new Promise((resolve) => setTimeout(resolve, 100));
      expect(runningChildren(pid)).toEqual([]);
      expect(found(root, 'signal-TIMEOUT.txt')).toHaveLength(1);
      process.kill(pid, 'SIGCONT');
      expect(await host.waitFor('result', 30_000), hostFailure(host, 'the result')).toEqual({ result: 'TIMEOUT' });
      await host.exited;
      expect(existsSync(root) && found(root, 'signal-TIMEOUT.txt')).toEqual([]);
    } finally {
      if (host.child.exitCode === null && host.child.signalCode === null) {
        process.kill(host.child.pid!, 'SIGCONT');
        host.child.kill('SIGKILL');
      }
    }
  });
});

describe.runIf(hasProc)('a child whose host holds up its own loop past the time limit', () => {
  it.each([
    ['a handler that waits', 'respects-signal'],
    ['a handler that rejects once its signal fires (AbortError)', 'rejects-on-signal'],
  ])('cancels %s, and the host, its loop free again, reports TIMEOUT (not how the child then ended)', async (_, handlerId) => {
    const timeoutMs = 3000;
    // Past the limit, the child's 2 s backstop and its 1 s grace: the child is gone when the loop turns again.
    const blockMs = timeoutMs + 2000 + 1000 + 2000;
    const host = startHost('stopped-host.mjs', { plugin: probePlugin, root, timeoutMs, handlerId, blockMs });
    try {
      // Before: WORKER_CRASHED (killed by SIGKILL) for the one that waits, HANDLER_ERROR (its AbortError) for the other.
      expect(await host.waitFor('result', 40_000), hostFailure(host, 'the result')).toEqual({ result: 'TIMEOUT' });
      await host.exited;
      expect(host.child.exitCode).toBe(0);
    } finally {
      if (host.child.exitCode === null && host.child.signalCode === null) host.child.kill('SIGKILL');
    }
  });
});

/**
 * Rows of the hostile matrix that only an OS sandbox defends: signals, network, /proc, what a
 * grandchild (outside Node's permission model) can read, and a grandchild that leaves its
 * process group. Node's permission model stops none of these; on the subprocess backend they
 * hold only when its children run under bubblewrap (`health().isolation.active`), so each row is
 * `needsSandbox`: on Linux a subprocess backend without bubblewrap FAILS the row, elsewhere the
 * row is skipped with that reason. In-process and worker-pool share the host process and defend
 * none of them.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { ExecutionEvent, IExecutionBackend } from '@kb-labs/plugin-execution-core';
import { expect } from 'vitest';
import { codes, undefended, type MatrixCell } from './hostile-cell.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Whether a row that needs the OS sandbox can run here at all (bubblewrap is Linux only). */
export const sandboxPlatform = process.platform === 'linux';

/**
 * Fails unless the backend's children really run under bubblewrap. Never a silent skip: on Linux
 * a missing sandbox is a broken promise of the subprocess backend, not a missing feature.
 */
export async function requireBubblewrap(backend: IExecutionBackend): Promise<void> {
  const { isolation } = await backend.health();
  if (isolation?.active !== 'bubblewrap') {
    throw new Error(
      `bubblewrap is required for this test on Linux, but the backend reports isolation ${JSON.stringify(isolation)}: ` +
        'install bubblewrap (bwrap) and allow user namespaces, or run on a platform where this test is skipped',
    );
  }
}

/** The argv marker `spawn-detached` gives its grandchild (the handler builds the same string). */
export const grandchildMarker = (token: string): string => `kb-detached-grandchild:${token}`;

/** A fresh random token for `spawn-detached`. */
export const newToken = (): string => randomBytes(12).toString('hex');

/**
 * Host pids whose command line contains `marker`, found by scanning /proc (a sandboxed plugin
 * reports pids of its own namespace, which mean nothing to the host). Zombies do not count.
 */
export function processesWithMarker(marker: string): number[] {
  const found: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const cmdline = readFileSync(`/proc/${name}/cmdline`, 'utf8');
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      if (cmdline.split('\0').some((arg) => arg.includes(marker)) && stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z') found.push(Number(name));
    } catch {
      // Gone while we looked.
    }
  }
  return found;
}

/** Polls until no host process carries `marker` (bounded). */
export async function goneWithin(marker: string, timeoutMs = 5000): Promise<number[]> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const left = processesWithMarker(marker);
    if (left.length === 0 || Date.now() > until) return left;
    await sleep(50);
  }
}

interface LoopbackListeners {
  targets: { host: string; port: number }[];
  connections: () => number;
  close: () => Promise<void>;
}

/** TCP listeners on 127.0.0.1 and (when the host has it) ::1, each on a free port, counting connections. */
async function listenOnLoopback(): Promise<LoopbackListeners> {
  let connections = 0;
  const servers: net.Server[] = [];
  const targets: { host: string; port: number }[] = [];
  for (const host of ['127.0.0.1', '::1']) {
    const server = net.createServer((socket) => {
      connections++;
      socket.destroy();
    });
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, host, () => resolve());
      });
    } catch (error) {
      if (host === '127.0.0.1') throw error;
      continue; // No IPv6 loopback on this host.
    }
    servers.push(server);
    targets.push({ host, port: (server.address() as net.AddressInfo).port });
  }
  const close = async () => {
    await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  };
  return { targets, connections: () => connections, close };
}

const SHARED_HOST = 'the handler runs in the host process';

export const SANDBOX_ROWS: MatrixCell[] = [
  {
    id: 'signal-host',
    title: 'send SIGUSR2 to its parent, the host pid, its own group and (sandboxed only) kill(-1)',
    handler: 'signal-host',
    needsSandbox: true,
    expect: {
      'in-process': undefended(`${SHARED_HOST}: process.kill reaches the host and, as root, every process; use subprocess (with bubblewrap)`),
      'worker-pool': undefended(`threads share the host process: process.kill reaches the host and, as root, every process; use subprocess (with bubblewrap)`),
      subprocess: codes(['ok'], 'own pid namespace: no host process is visible to signal'),
      queue: codes(['ok'], "on the worker's subprocess backend: own pid namespace: no host process is visible to signal"),
    },
    prepare: async (env) => {
      let received = 0;
      const count = () => void received++;
      process.on('SIGUSR2', count);
      return {
        // kill(-1) only where the sandbox is confirmed: as root outside one it reaches every process.
        input: { hostPid: process.pid, all: env.sandboxed },
        verify: async (result) => {
          await sleep(200);
          expect(received, 'SIGUSR2 signals that reached the host test process').toBe(0);
          const { outcome } = (result.ok ? result.data : {}) as { outcome?: Record<string, string> };
          expect(Object.keys(outcome ?? {}).sort()).toEqual(env.sandboxed ? ['all', 'group', 'hostPid', 'ppid'] : ['group', 'hostPid', 'ppid']);
          // The host's pid does not exist in the child's pid namespace (unless it is a tiny number).
          if (process.pid > 16) expect(outcome?.hostPid).toBe('ESRCH');
        },
        close: () => void process.off('SIGUSR2', count),
      };
    },
  },
  {
    id: 'network-loopback',
    title: 'connect to listeners on the host loopback without declaring network',
    handler: 'connect-loopback',
    needsSandbox: true,
    expect: {
      'in-process': undefended(`${SHARED_HOST}: its sockets are the host's, nothing checks them; use subprocess (with bubblewrap)`),
      'worker-pool': undefended(`threads share the host's sockets and network: nothing checks a connection they open; use subprocess (with bubblewrap)`),
      subprocess: codes(['ok'], "own network namespace: the host's loopback is not reachable"),
      queue: codes(['ok'], "on the worker's subprocess backend: own network namespace: the host's loopback is not reachable"),
    },
    prepare: async () => {
      const listeners = await listenOnLoopback();
      return {
        input: { targets: listeners.targets },
        verify: async (result) => {
          await sleep(100);
          expect(listeners.connections(), 'connections the host listeners accepted').toBe(0);
          const attempts = (result.ok ? result.data : []) as { host: string; outcome: string }[];
          expect(attempts.map((a) => a.host)).toEqual(listeners.targets.map((t) => t.host));
          for (const attempt of attempts) expect(attempt.outcome, `attempt on ${attempt.host}`).toMatch(/^E[A-Z_]+$/);
        },
        close: listeners.close,
      };
    },
  },
  {
    id: 'proc-listing',
    title: 'list the processes in /proc',
    handler: 'list-proc',
    needsSandbox: true,
    // Node's permission model refuses readdir of /proc unless it is granted; grant it, so what
    // is left to see is only what the OS shows.
    backendOptions: { subprocess: { allowRead: ['/proc'] } },
    // queue: its workers are started with allowRead ['/proc'] (a worker's local options are its own).
    expect: {
      'in-process': undefended(`${SHARED_HOST}: /proc shows every process of the machine, the host's included; use subprocess (with bubblewrap)`),
      'worker-pool': undefended(`threads share the host's /proc: every process of the machine is visible; use subprocess (with bubblewrap)`),
      subprocess: codes(['ok'], 'own pid namespace and /proc: only the sandbox’s own processes'),
      queue: codes(['ok'], "on the worker's subprocess backend: own pid namespace and /proc: only the sandbox’s own processes"),
    },
    check: (result) => {
      if (!result.ok) return;
      const { self, pids } = result.data as { self: number; pids: string[] };
      expect(pids).toContain(String(self));
      expect(pids.length, `pids seen: ${pids.join(' ')}`).toBeLessThanOrEqual(5);
      if (process.pid > 5) expect(pids).not.toContain(String(process.pid));
    },
  },
  {
    id: 'read-secret-via-grandchild',
    title: 'read a host file through a grandchild (outside Node’s permission model)',
    handler: 'read-via-grandchild',
    needsSandbox: true,
    options: { permissions: { childProcess: true } },
    expect: {
      'in-process': undefended(`${SHARED_HOST}: the grandchild has the host's file system and user; use subprocess (with bubblewrap)`),
      'worker-pool': undefended(`the grandchild of a thread is the host's child, with the host's file system; use subprocess (with bubblewrap)`),
      subprocess: codes(['ok'], 'the sandbox shows no host file outside its grants: ENOENT'),
      queue: codes(['ok'], "on the worker's subprocess backend: the sandbox shows no host file outside its grants: ENOENT"),
    },
    prepare: async (env) => {
      const secret = path.join(env.outside, 'grandchild-secret.txt');
      await writeFile(secret, 'host secret for a grandchild');
      return {
        input: { path: secret },
        verify: (result) => {
          expect(result.ok && result.data).toEqual({ spawned: true, found: false, code: 'ENOENT' });
          expect(JSON.stringify(result)).not.toContain('host secret');
        },
        close: () => rm(secret, { force: true }),
      };
    },
  },
  {
    id: 'detached-grandchild',
    title: 'a detached grandchild (own session and group) when the execution times out',
    handler: 'spawn-detached',
    needsSandbox: true,
    // The child's start under bubblewrap and the grandchild's come before the limit: with a third
    // of a core they took past 1.5 s, and the grandchild was never seen running.
    timeoutMs: 5000,
    options: { permissions: { childProcess: true } },
    expect: {
      'in-process': undefended("the grandchild is the host's own child and outlives the execution; use subprocess (with bubblewrap)"),
      'worker-pool': undefended("the grandchild is the host's child and outlives the execution; use subprocess (with bubblewrap)"),
      subprocess: codes(['TIMEOUT'], 'it dies with the pid namespace, whatever its group; abort and a killed host: packages/subprocess/test/sandbox-grandchild.test.ts'),
      queue: codes(['TIMEOUT'], "on the worker's subprocess backend: it dies with the pid namespace, whatever its group; abort and a killed host: packages/subprocess/test/sandbox-grandchild.test.ts"),
    },
    prepare: async () => {
      const token = newToken();
      const marker = grandchildMarker(token);
      let seenAlive: number[] = [];
      return {
        input: { token },
        onEvent: (event: ExecutionEvent) => {
          if ((event.event as { type?: string } | undefined)?.type === 'grandchild started') seenAlive = processesWithMarker(marker);
        },
        verify: async () => {
          expect(seenAlive.length, 'the grandchild was running while the handler ran').toBe(1);
          expect(await goneWithin(marker), 'host pids of grandchildren still alive 5 s after the result').toEqual([]);
        },
        // Whatever the outcome, the machine is not left with a grandchild running.
        close: () => processesWithMarker(marker).forEach((pid) => process.kill(pid, 'SIGKILL')),
      };
    },
  },
];

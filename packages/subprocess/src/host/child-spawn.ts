import type { ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import crossSpawn from 'cross-spawn';
import { spawnedWithoutPipes } from './crash.js';
import { FIRST_FILE_FD, type Launch } from './sandbox.js';

/**
 * Spawns a child's command line (Node, or bubblewrap around it) with its pipes, and hands it what
 * it reads at its start: bubblewrap's system-call filter on stdin, the files it shows on fds 5….
 * Throws when the system gave it no pipes (a spawn refused before it began).
 */
export function spawnLaunch(launch: Launch, cwd: string, env: Record<string, string>): ChildProcess {
  const child = crossSpawn(launch.command, launch.args, {
    cwd,
    env,
    // fd 3 is the protocol pipe, not Node's 'ipc' channel, whose malformed bytes make the parent throw (nodejs/node#61312).
    // Sandboxed: fd 4 is bubblewrap's status, fd 0 its system-call filter, fds 5… files it shows (closed before Node starts).
    stdio: [launch.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe', 'pipe', ...(launch.sandboxed ? ['pipe' as const] : []), ...(launch.files ?? []).map(() => 'pipe' as const)],
    // Its own process group, so a stop reaches every process it started (POSIX only).
    detached: process.platform !== 'win32',
    windowsHide: true,
    ...(launch.user ?? {}),
  });
  const noPipes = spawnedWithoutPipes(child);
  if (noPipes) throw noPipes;
  if (launch.stdin) child.stdin?.on('error', () => undefined).end(launch.stdin);
  launch.files?.forEach((data, index) => (child.stdio[FIRST_FILE_FD + index] as Socket | null)?.on('error', () => undefined).end(data));
  return child;
}

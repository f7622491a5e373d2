import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/**
 * Where a test can make a cgroup with a pids limit: cgroup v2's root when its pids controller is
 * handed down, else v1's pids hierarchy; undefined when neither is writable (not root, not Linux,
 * a read-only /sys/fs/cgroup).
 */
function pidsHierarchy(): string | undefined {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return undefined;
  const unified = '/sys/fs/cgroup';
  try {
    if (readFileSync(path.join(unified, 'cgroup.subtree_control'), 'utf8').split(/\s+/).includes('pids')) return unified;
  } catch {
    // Not cgroup v2 at /sys/fs/cgroup.
  }
  return existsSync('/sys/fs/cgroup/pids/cgroup.procs') ? '/sys/fs/cgroup/pids' : undefined;
}

/** True where `runInPidsCgroup` can run: Linux, root, a writable pids controller. */
export const canLimitPids = pidsHierarchy() !== undefined;

/**
 * Run `node <script> <cgroup folder> <arg>` in a cgroup of its own with no pids limit yet: the
 * script sets `pids.max` in that folder itself (the threads and processes it may have, counted
 * with those it has: `pids.current`) and lifts it (`max`). Whatever it leaves in the cgroup is
 * killed and the cgroup removed when it is over.
 */
export function runInPidsCgroup(script: string, arg: string, timeoutMs = 60_000): SpawnSyncReturns<string> {
  const hierarchy = pidsHierarchy();
  if (!hierarchy) throw new Error('runInPidsCgroup needs Linux, root and a writable pids cgroup controller (canLimitPids)');
  const cgroup = path.join(hierarchy, `kb-pids-test-${process.pid}-${Date.now()}`);
  mkdirSync(cgroup);
  try {
    // The shell moves itself in, then becomes the host: everything the host starts is counted there.
    return spawnSync('sh', ['-c', 'echo $$ > "$1/cgroup.procs" && exec "$2" "$3" "$1" "$4"', 'sh', cgroup, process.execPath, script, arg], {
      env: { PATH: process.env.PATH ?? '' },
      encoding: 'utf8',
      timeout: timeoutMs,
    });
  } finally {
    writeFileSync(path.join(cgroup, 'pids.max'), 'max');
    for (const pid of readFileSync(path.join(cgroup, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // Gone already.
      }
    }
    removeWhenEmpty(cgroup);
  }
}

/** A cgroup can be removed once the processes killed in it are gone (a moment after their SIGKILL). */
function removeWhenEmpty(cgroup: string): void {
  for (let tries = 0; ; tries++) {
    try {
      rmdirSync(cgroup);
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EBUSY' || tries >= 50) throw error;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
    }
  }
}

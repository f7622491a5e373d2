import { statSync } from 'node:fs';
import path from 'node:path';
import { monotonicNow } from '@kb-labs/plugin-execution-core/backend-kit';
import type { SandboxUser } from './sandbox.js';

/**
 * Why `user` could not use every path of a sandbox's view, or undefined when it can. bubblewrap
 * runs as that user and opens each bound path as it, and the child then reads (or writes) them
 * as it: every folder on the way must let it pass, and the path itself must let it read (or
 * write) — except `exempt` ones, which the host hands to it. Decided from the mode bits (owner, group, others; not ACLs or supplementary groups).
 * A folder's answer is kept for `CACHE_MS`: a spawn checks a dozen paths, most of them the same.
 * Timed on the monotonic clock: a wall clock stepped back would keep an answer for as long as the step.
 */
export function unusableBy(user: SandboxUser, binds: Iterable<[string, boolean]>, exempt: ReadonlySet<string>): { path: string; why: string } | undefined {
  for (const [p, writable] of binds) {
    let dir = path.dirname(p);
    const ancestors: string[] = [];
    while (dir !== path.dirname(dir)) {
      ancestors.push(dir);
      dir = path.dirname(dir);
    }
    for (const folder of ancestors) {
      if (!allows(user, folder, 0o1)) return { path: folder, why: `${folder} does not let uid ${user.uid} pass` };
    }
    if (!exempt.has(p) && !allows(user, p, writable ? 0o2 : 0o4)) return { path: p, why: `${p} is not ${writable ? 'writable' : 'readable'} by uid ${user.uid}` };
  }
  return undefined;
}

const CACHE_MS = 1000;
const cache = new Map<string, { at: number; allowed: boolean }>();

/** Whether `user` has permission bits `bits` (1 x, 2 w, 4 r) on `p`. */
function allows(user: SandboxUser, p: string, bits: number): boolean {
  const key = `${user.uid}:${user.gid}:${bits}:${p}`;
  const now = monotonicNow();
  const hit = cache.get(key);
  if (hit && now - hit.at < CACHE_MS) return hit.allowed;
  let allowed: boolean;
  try {
    const { mode, uid, gid } = statSync(p);
    const shift = uid === user.uid ? 6 : gid === user.gid ? 3 : 0;
    allowed = ((mode >> shift) & bits) === bits;
  } catch {
    allowed = false;
  }
  if (cache.size > 4096) cache.clear();
  cache.set(key, { at: now, allowed });
  return allowed;
}

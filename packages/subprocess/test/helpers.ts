import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

export const PROBE = '@subprocess/probe';
export const probePlugin = path.join(here, 'fixtures', 'plugins', 'probe');
export const fixturesDir = path.join(here, 'fixtures');

export const hasProc = existsSync('/proc/self/stat');

/** `/proc/<pid>/stat` fields after the command name: [state, ppid, pgrp, …]. */
function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/**
 * Whether a process still runs. A zombie counts as gone: it has exited and only waits for a
 * parent (possibly a container init that never reaps) to collect its status.
 */
export function isAlive(pid: number): boolean {
  if (hasProc) {
    const fields = statFields(pid);
    return fields !== undefined && fields[0] !== 'Z';
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Live (non-zombie) processes whose parent is `parent`. */
export function childrenOf(parent: number = process.pid): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const fields = statFields(Number(name));
    if (fields && fields[0] !== 'Z' && Number(fields[1]) === parent) out.push(Number(name));
  }
  return out;
}

/** Poll until `check` holds (bounded). */
export async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > until) return false;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Whether every folder above `p` lets others pass (x for others): what uid 65534 needs to reach it. */
export function passableByOthers(p: string): boolean {
  for (let dir = path.dirname(p); dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if ((statSync(dir).mode & 0o001) === 0) return false;
  }
  return true;
}

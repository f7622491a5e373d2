import { readdir, readFile } from 'node:fs/promises';

/** Live child processes of this process (Linux: /proc), by pid; empty elsewhere. */
export async function childProcesses(): Promise<string[]> {
  if (process.platform !== 'linux') return [];
  const children: string[] = [];
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
      // The fields after the command name (in parentheses, which may hold spaces): state, ppid.
      const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(ppid) === process.pid && state !== 'Z') children.push(`${pid} ${stat.slice(stat.indexOf('('), stat.lastIndexOf(')') + 1)}`);
    } catch {
      // It ended while we looked.
    }
  }
  return children;
}

/** Threads of this process (Linux: /proc/self/task); 0 elsewhere. */
export async function threadCount(): Promise<number> {
  return process.platform === 'linux' ? (await readdir('/proc/self/task')).length : 0;
}

/** What keeps the event loop alive or holds a resource now, by type (the host's terminal aside). */
export function activeResources(): string[] {
  return process.getActiveResourcesInfo().filter((type) => type !== 'TTYWrap');
}

/** Polls `find` until it finds nothing or `withinMs` passed; returns what it found last. */
export async function untilNoneLeft<T>(find: () => Promise<T[]> | T[], withinMs: number): Promise<T[]> {
  const until = Date.now() + withinMs;
  for (;;) {
    const found = await find();
    if (found.length === 0 || Date.now() > until) return found;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

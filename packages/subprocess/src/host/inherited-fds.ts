import { readdirSync, readFileSync } from 'node:fs';

/** O_CLOEXEC as /proc/<pid>/fdinfo prints `flags` (octal). */
const O_CLOEXEC = 0o2000000;

/**
 * The host's descriptors that a child would inherit: those without close-on-exec, at or above
 * `from` (the child's stdio and protocol pipe take the numbers below). Node opens its own with
 * close-on-exec; what is left came from whoever started the host (a shell, a supervisor, a
 * test runner) or from a native addon. The child entry closes them before any plugin code runs:
 * neither Node's spawn nor bubblewrap does. Linux only (elsewhere: none found).
 */
export function inheritedDescriptors(from: number): number[] {
  let names: string[];
  try {
    names = readdirSync('/proc/self/fd');
  } catch {
    return [];
  }
  const out: number[] = [];
  for (const name of names) {
    const fd = Number(name);
    if (!Number.isInteger(fd) || fd < from) continue;
    let info: string;
    try {
      info = readFileSync(`/proc/self/fdinfo/${fd}`, 'latin1');
    } catch {
      continue; // closed meanwhile, or the descriptor of the directory listing itself
    }
    const flags = /^flags:\s*([0-7]+)/m.exec(info);
    if (flags && (parseInt(flags[1]!, 8) & O_CLOEXEC) === 0) out.push(fd);
  }
  return out;
}

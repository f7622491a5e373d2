import { closeSync, fstatSync, openSync, readdirSync, readSync } from 'node:fs';

/** O_CLOEXEC as /proc/<pid>/fdinfo prints `flags` (octal). */
const O_CLOEXEC = 0o2000000;

/** What the last look found of a descriptor: the open file it was, and whether it had close-on-exec. */
interface Known {
  file: string;
  closeOnExec: boolean;
}

/**
 * Close-on-exec descriptors seen before, by number. A host serving many connections holds
 * thousands of descriptors, nearly all Node's own (close-on-exec, each a socket of its own
 * inode); reading the fdinfo of each on every spawn cost ~15 µs a descriptor. A descriptor still
 * the same open file (device, inode, type) keeps its answer. Those without close-on-exec are
 * few and read every time: a number the host closed and opened again, even on the same file,
 * is never handed to a child to close (in the child that number may be Node's own).
 */
const known = new Map<number, Known>();
const flagsBuffer = Buffer.alloc(256);

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
  const open = new Set<number>();
  for (const name of names) {
    const fd = Number(name);
    if (!Number.isInteger(fd) || fd < from) continue;
    const file = openFileOf(fd);
    if (file === undefined) continue; // closed meanwhile, or the descriptor of the directory listing itself
    open.add(fd);
    const seen = known.get(fd);
    if (seen?.closeOnExec && seen.file === file) continue;
    const closeOnExec = hasCloseOnExec(fd);
    if (closeOnExec === undefined) continue;
    known.set(fd, { file, closeOnExec });
    if (!closeOnExec) out.push(fd);
  }
  for (const fd of known.keys()) if (!open.has(fd)) known.delete(fd);
  return out;
}

/** Which open file `fd` is (device, inode, type), or undefined when it is not open. */
function openFileOf(fd: number): string | undefined {
  try {
    const { dev, ino, mode, rdev } = fstatSync(fd);
    return `${dev}:${ino}:${mode}:${rdev}`;
  } catch {
    return undefined;
  }
}

/** Whether `fd` has close-on-exec, read from /proc/self/fdinfo; undefined when it cannot be read. */
function hasCloseOnExec(fd: number): boolean | undefined {
  let length: number;
  try {
    const info = openSync(`/proc/self/fdinfo/${fd}`, 'r');
    try {
      length = readSync(info, flagsBuffer, 0, flagsBuffer.length, null);
    } finally {
      closeSync(info);
    }
  } catch {
    return undefined;
  }
  const flags = /^flags:\s*([0-7]+)/m.exec(flagsBuffer.toString('latin1', 0, length));
  return flags ? (parseInt(flags[1]!, 8) & O_CLOEXEC) !== 0 : undefined;
}

import type { Stats } from 'node:fs';

/** Node reads no file larger than this (2 GiB less one byte) into a module. */
const LARGEST_MODULE_BYTES = 2 ** 31 - 1;

/**
 * Why the file a handler's `entry` names (`stats`: what stat() said of it, undefined when it does
 * not exist) cannot be its module, or undefined when it can. A FIFO or a device would hold the
 * import for good (and with it a thread of the host's file-system pool, in the host's own
 * process on in-process and worker-pool backends); one past 2 GiB is never read.
 */
export function notModuleFile(entry: string, stats: Stats | undefined): string | undefined {
  if (!stats || (stats.isFile() && stats.size <= LARGEST_MODULE_BYTES)) return undefined;
  if (stats.isDirectory()) return `${entry} is a folder; name the module file in it (./${joinEntry(entry, 'index.js')}, say)`;
  if (stats.isFile()) return `${entry} is ${stats.size} bytes, more than Node reads into a module (2 GiB)`;
  const kind = stats.isFIFO() ? 'a FIFO' : stats.isCharacterDevice() || stats.isBlockDevice() ? 'a device' : stats.isSocket() ? 'a socket' : 'not a regular file';
  return `${entry} is ${kind}, not a module file (a handler's entry must be a regular file)`;
}

function joinEntry(entry: string, name: string): string {
  return `${entry.replace(/^\.\//, '').replace(/\/+$/, '')}/${name}`;
}

import { lstatSync, readlinkSync, realpathSync } from 'node:fs';
import path from 'node:path';

/** Symlinks followed before a path is taken as missing (the kernel's own limit is 40). */
const MAX_LINKS = 40;

/**
 * The file system a sandboxed child sees, as bubblewrap arguments. Every path is shown at the
 * same place it has on the host, so Node's permission flags inside name the same paths as the
 * host does. A path reached through symlinks (`/lib` → `usr/lib`, a pnpm link, `/usr/bin/node`
 * → a versioned folder) is bound at its real location and each link on the way is recreated as
 * a link, so the child resolves it exactly as the host does and sees nothing else of the folders
 * the links live in. Paths that do not exist are left out: there is nothing to see.
 */
export class SandboxView {
  /** Real path → writable. */
  readonly #binds = new Map<string, boolean>();
  /** Link location → link text. */
  readonly #links = new Map<string, string>();

  /** Show `p` (file or folder) read-only; nothing when it does not exist. */
  readOnly(p: string): void {
    const real = this.#walk(p);
    if (real !== undefined && !OWN_MOUNTS.some((own) => within(real, own)) && !this.#binds.has(real)) this.#binds.set(real, false);
  }

  /** Show `p` read-write (wins over a read-only grant of the same path). */
  writable(p: string): void {
    const real = this.#walk(p);
    if (real !== undefined && !OWN_MOUNTS.some((own) => within(real, own))) this.#binds.set(real, true);
  }

  /** Whether `p` is shown already: inside a bound folder (the host's `/` too), or at or under a recreated link. */
  holds(p: string): boolean {
    for (const real of this.#binds.keys()) if (within(p, real)) return true;
    for (const at of this.#links.keys()) if (within(p, at)) return true;
    return false;
  }

  /** Every bound real path, with whether it is writable. */
  binds(): IterableIterator<[string, boolean]> {
    return this.#binds.entries();
  }

  /**
   * The bubblewrap arguments: binds parents first (a bind inside another must come after it),
   * then the links that lie outside every bind (those inside one exist there already), then the
   * sandbox's own root made read-only (a tmpfs bubblewrap makes, which would otherwise take a
   * child's files up to half the machine's RAM): the last mount, once every mount point is made.
   * `/` bound itself (`allowRead: ['/']`) is the host's, read-only or granted writable.
   */
  args(): string[] {
    const out: string[] = [];
    const binds = [...this.#binds].sort(([a], [b]) => depth(a) - depth(b) || a.localeCompare(b));
    for (const [real, writable] of binds) if (real !== path.sep) out.push(writable ? '--bind' : '--ro-bind', real, real);
    const bound = binds.map(([real]) => real);
    for (const [at, text] of this.#links) {
      if (!bound.some((dir) => within(at, dir))) out.push('--symlink', text, at);
    }
    if (!this.#binds.has(path.sep)) out.push('--remount-ro', path.sep);
    return out;
  }

  /**
   * The bind of `/` itself (`allowRead: ['/']`), if granted: it goes before the sandbox's own
   * /tmp, /proc and /dev, which it would hide otherwise (Node cannot start without /dev/null).
   */
  rootArgs(): string[] {
    const writable = this.#binds.get(path.sep);
    return writable === undefined ? [] : [writable ? '--bind' : '--ro-bind', path.sep, path.sep];
  }

  /** Resolve `p` component by component, noting each symlink met; the real path, or undefined if missing. */
  #walk(p: string): string | undefined {
    let pending = path.resolve(p).split(path.sep).filter(Boolean);
    let current: string = path.sep;
    for (let links = 0; pending.length > 0; ) {
      const next = path.join(current, pending.shift()!);
      let isLink: boolean;
      try {
        isLink = lstatSync(next).isSymbolicLink();
      } catch {
        return undefined;
      }
      if (!isLink) {
        current = next;
        continue;
      }
      if (++links > MAX_LINKS) return undefined;
      let text: string;
      try {
        text = readlinkSync(next);
      } catch {
        // Gone (or no longer a link) since lstat: as missing.
        return undefined;
      }
      this.#links.set(next, text);
      const target = path.resolve(current, text);
      pending = [...target.split(path.sep).filter(Boolean), ...pending];
      current = path.sep;
    }
    return current;
  }
}

/**
 * The sandbox's own /proc (its processes only) and /dev (null, zero, random, tty…): a grant of
 * the host's (`allowRead: ['/proc']`) lets Node's permission model read them, never replaces them.
 */
const OWN_MOUNTS = ['/proc', '/dev'];

/**
 * The folder of the sandbox's own (`/dev`, `/proc`) that `p` lies in, if it does: a workspace or a
 * plugin folder there (`/dev/shm/…`) cannot be shown to a sandboxed child, whose /dev is not the
 * host's. A path not made yet is judged by the nearest folder above it that exists.
 */
export function underOwnMount(p: string): string | undefined {
  for (let at = path.resolve(p); ; at = path.dirname(at)) {
    let real: string;
    try {
      real = realpathSync(at);
    } catch {
      if (path.dirname(at) === at) return undefined;
      continue;
    }
    return OWN_MOUNTS.find((own) => within(real, own));
  }
}

function within(p: string, dir: string): boolean {
  return p === dir || p.startsWith(dir === '/' ? '/' : `${dir}/`);
}

function depth(p: string): number {
  return p.split(path.sep).length;
}

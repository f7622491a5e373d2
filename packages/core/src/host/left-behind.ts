import type { WorkspaceError } from '../errors.js';
import { removeTree } from './remove-tree.js';
import { KEPT_SUFFIX } from './workspace-sweep.js';
import { monotonicNow } from '../real-timers.js';
const fs = process.getBuiltinModule('node:fs');

/** How often the directories left behind are tried again at most (on the next workspace made). */
const RETRY_EVERY_MS = 5000;

/**
 * What a WorkspaceManager could not clean up: directories of leases that could not be removed
 * (nothing else says so: a release fails in the background of an execution's result), and kept
 * ones whose `.kept` mark could not be written. Each kind said once as a process warning, and by
 * health() while it lasts: a directory removed since (tried again here, or by a sweep()) is no
 * longer said, so that a passing condition (a read-only remount, the process out of descriptors
 * for longer than removeTree waits) does not leave health() failing for good; nor is a kept one
 * the host has moved away or marked itself (what health() tells it to do).
 */
export class LeftBehind {
  readonly #dirs = new Set<string>();
  #last = '';
  #warned = false;
  readonly #unmarked = { dirs: new Set<string>(), warned: false, last: '' };
  #retrying: Promise<void> | undefined;
  #retriedAt = -Infinity;

  /** A lease's directory could not be removed. */
  left(dir: string, error: WorkspaceError): void {
    this.#dirs.add(dir);
    this.#last = error.message;
    if (this.#warned) return;
    this.#warned = true;
    process.emitWarning(`A workspace directory could not be removed: ${error.message}`, { code: 'KB_PLUGIN_WORKSPACE_LEFT' });
  }

  /** A kept lease whose `.kept` mark could not be written (a full disk, a read-only mount): this process leaves it, a later sweep would not. */
  unmarked(dir: string, error: WorkspaceError): void {
    const unmarked = this.#unmarked;
    unmarked.dirs.add(dir);
    unmarked.last = error.message;
    if (unmarked.warned) return;
    unmarked.warned = true;
    process.emitWarning(`${error.message}: a sweep() once this process is gone would remove it`, { code: 'KB_PLUGIN_WORKSPACE_UNMARKED' });
  }

  /** Try removing the directories left behind again, in the background (at most every RETRY_EVERY_MS). */
  retry(): void {
    if (this.#dirs.size === 0 || this.#retrying || monotonicNow() - this.#retriedAt < RETRY_EVERY_MS) return;
    this.#retriedAt = monotonicNow();
    this.#retrying = (async () => {
      for (const dir of [...this.#dirs]) {
        try {
          await removeTree(dir);
          this.#dirs.delete(dir);
        } catch {
          // Still cannot be removed: said by describe() as before; tried again later.
        }
      }
    })().finally(() => (this.#retrying = undefined));
  }

  /** What health() says of it, under `root`; undefined when nothing is left behind. */
  describe(root: string): string | undefined {
    for (const dir of this.#dirs) if (!fs.existsSync(dir)) this.#dirs.delete(dir);
    const unmarkedDirs = this.#unmarked.dirs;
    for (const dir of unmarkedDirs) if (!fs.existsSync(dir) || fs.statSync(dir + KEPT_SUFFIX, { throwIfNoEntry: false })?.isFile()) unmarkedDirs.delete(dir);
    const count = this.#dirs.size;
    const unmarked = { count: unmarkedDirs.size, last: this.#unmarked.last };
    const them = unmarked.count === 1 ? 'it' : 'them';
    const said = [
      ...(count ? [`${count} workspace director${count === 1 ? 'y' : 'ies'} under ${root} could not be removed (the last: ${this.#last}); \`kb-plugin-exec sweep --workspace-root <root>\` retries`] : []),
      ...(unmarked.count ? [`${unmarked.count} kept workspace director${unmarked.count === 1 ? 'y' : 'ies'} under ${root} could not be marked as kept (the last: ${unmarked.last}): a sweep() once this process is gone would remove ${them}; move ${them} elsewhere, or write the \`<dir>.kept\` file`] : []),
    ];
    return said.length ? said.join('; ') : undefined;
  }
}
